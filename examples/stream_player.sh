# Sourced by the wrappers that stream from a client's HTTP server (webtorrent_stream.sh,
# rqbit_stream.sh): the player, curl reading the stream, and the clean end of client and player.
#
#   player_mode NAME [ARG]  sets $mode from the wrapper's first argument: rate (default; also
#                           for none, or the config's args template) or fast; else exits 2
#   player_clock            when the client starts: the player's start time and rate. rate:
#                           at the startup delay, at the playback rate (a player without a
#                           cache); fast: at once, as fast as pieces come (mpv, VLC)
#   player_due              true when it is time to play and no player runs yet
#   player_play URL         starts curl reading URL in the background
#   player_end              ends the player (if any) and reaps it
#   player_stop PID         ends the player, then PID (SIGTERM, SIGKILL after 5 s); reaps both

player=
player_mode() {
    mode=rate
    case ${2:-} in
    rate | fast) mode=$2 ;;
    '' | -*) ;; # no argument, or the config's args template: the default
    *)
        echo "$1: unknown mode '$2' (rate or fast)" >&2
        exit 2
        ;;
    esac
}

player_clock() {
    now=$(date +%s%N)
    if [ "$mode" = rate ]; then
        player_at=$(awk "BEGIN { printf \"%.0f\", $now + ${TESTBED_DELAY:-0} * 1e9 }")
        player_limit="--limit-rate $(awk "BEGIN { printf \"%d\", ${TESTBED_RATE:-0} * 1024 }")"
    else
        player_at=$now
        player_limit=
    fi
}

player_due() {
    [ -z "$player" ] && [ "$(date +%s%N)" -ge "$player_at" ]
}

player_play() {
    # shellcheck disable=SC2086 # $player_limit is empty or two words
    curl -s $player_limit -o /dev/null "$1" &
    player=$!
}

player_end() {
    [ -z "$player" ] || kill "$player" 2>/dev/null || true
    [ -z "$player" ] || wait "$player" 2>/dev/null || true
}

player_stop() {
    [ -z "$player" ] || kill "$player" 2>/dev/null || true
    kill "$1" 2>/dev/null || true
    i=0
    while kill -0 "$1" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    kill -9 "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    player_end
}

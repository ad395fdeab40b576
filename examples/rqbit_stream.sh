#!/bin/sh
# rqbit as my client, unmodified, in its streaming mode, with a player reading from it:
#
#   testbed run examples/rqbit_stream.sh [rate|fast]        (default: rate)
#   testbed compare --client 'examples/rqbit_stream.sh fast' --policy deadline ...
#
# rqbit downloads the torrent into the run folder (`rqbit download -e`: it exits once the file
# is complete) and serves it on its HTTP API (/torrents/0/stream/0); the player is curl reading
# that stream. An open stream makes the pieces from its read position on (32 MiB ahead) rqbit's
# priority pieces, which a faster peer may take over from a slower one; without a reader rqbit
# goes in file order anyway. rate: curl starts at the startup delay and reads at the playback
# rate (--limit-rate), a player without a cache; fast: curl starts at once and reads as fast
# as pieces come. rqbit never calls the VoD server, so the referee scores it (late bytes;
# docs/referee.md). Its settings are rqbit's defaults but for the lab's upload cap
# (--ratelimit-upload, bytes/s), its API on 127.0.0.1 at a free port, and no UPnP; HOME and
# XDG_* point into the run folder (where it keeps its DHT state). The player is
# examples/stream_player.sh's. Needs: curl, python3, and rqbit (crates.io), installed as
#   cargo install rqbit --locked --no-default-features --features rust-tls --root /opt/rqbit
# (tests/install-deps.sh does it; about 5 minutes on 2 cores). Elsewhere: RQBIT=/path/to/rqbit.
set -e
. "$(dirname "$0")/stream_player.sh"
player_mode rqbit_stream.sh "${1:-}"
rq=${RQBIT:-/opt/rqbit/bin/rqbit}
[ -x "$rq" ] || rq=$(command -v rqbit) || {
    echo "rqbit_stream.sh: no rqbit (see the install line in this script)" >&2
    exit 127
}
dir=$(dirname "$TESTBED_SAVEAS")
state=$dir/.rqbit
mkdir -p "$state"
export HOME="$state" XDG_CONFIG_HOME="$state/.config" XDG_CACHE_HOME="$state/.cache"
export XDG_DATA_HOME="$state/.local/share" XDG_STATE_HOME="$state/.local/state"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
up=$(awk "BEGIN { printf \"%d\", ${TESTBED_MAX_UPLOAD_RATE:-0} * 1024 }")
limit_up=
[ "$up" -gt 0 ] && limit_up="--ratelimit-upload $up"
player_clock
# shellcheck disable=SC2086 # $limit_up is empty or two words
"$rq" --http-api-listen-addr "127.0.0.1:$port" --disable-upnp-port-forward $limit_up \
    download -e -o "$dir" "$TESTBED_TORRENT" >"$state/rqbit.log" 2>&1 &
rq_pid=$!
trap 'player_stop "$rq_pid"; exit 143' TERM
trap 'player_stop "$rq_pid"; exit 130' INT

while kill -0 "$rq_pid" 2>/dev/null; do
    if player_due && curl -s -m 2 -o /dev/null "http://127.0.0.1:$port/torrents/0"; then
        player_play "http://127.0.0.1:$port/torrents/0/stream/0"
    fi
    sleep 0.1
done
code=0
wait "$rq_pid" || code=$?
player_end
if [ "$code" -ne 0 ]; then
    echo "rqbit_stream.sh: rqbit exited with $code; its log:" >&2
    tail -n 5 "$state/rqbit.log" >&2
fi
exit "$code"

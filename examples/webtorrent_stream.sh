#!/bin/sh
# webtorrent-cli as my client, unmodified, in its streaming mode, with a player reading from it:
#
#   testbed run examples/webtorrent_stream.sh [rate|fast]        (default: rate)
#   testbed compare --client 'examples/webtorrent_stream.sh fast' --policy deadline ...
#
# webtorrent downloads the torrent into the run folder and serves it on its HTTP server (the
# one its --vlc/--mpv modes hand to the player); the player is curl reading that stream, which
# webtorrent feeds through a file read stream: a piece the reader waits for becomes "critical"
# with the next two (a faster peer may take its blocks over from a slower one), on top of its
# default picker, file order (but its first request to each new peer is the last piece that
# peer has). rate: curl starts at the startup delay and reads at the playback rate
# (--limit-rate), a player without a cache; fast: curl starts at once and reads as fast as
# pieces come (a player with a big cache, as mpv or VLC). webtorrent reads up to 16 pieces
# ahead of the player in both.
# webtorrent never calls the VoD server, so the referee scores it (late bytes;
# docs/referee.md). Its settings are webtorrent's defaults but for the lab's upload cap (-u, KB of 1024
# B), --quiet (no terminal UI) and its port; HOME, XDG_* and TMPDIR point into the run folder.
# Once a player has connected webtorrent seeds until stopped, so this wrapper stops it when
# its --on-done script runs. Needs: curl, Node 20+, webtorrent-cli 6 (npm), installed as
#   mkdir -p /opt/webtorrent && cd /opt/webtorrent && printf '%s\n' '{"private": true,' \
#     '"dependencies": {"webtorrent-cli": "^6.0.1"},' \
#     '"overrides": {"node-datachannel": "^0.33.4"}}' > package.json && npm install --ignore-scripts
# (--ignore-scripts: ip-set 3.0.0's stray `npx only-allow pnpm` preinstall fails under npm;
# node-datachannel 0.33 brings its prebuilt binary from npm, 0.32 fetches it from GitHub at
# install time.) Elsewhere: WEBTORRENT=/path/to/webtorrent. The player is
# examples/stream_player.sh's.
set -e
. "$(dirname "$0")/stream_player.sh"
player_mode webtorrent_stream.sh "${1:-}"
wt=${WEBTORRENT:-/opt/webtorrent/node_modules/.bin/webtorrent}
[ -x "$wt" ] || wt=$(command -v webtorrent) || {
    echo "webtorrent_stream.sh: no webtorrent (see the install line in this script)" >&2
    exit 127
}
dir=$(dirname "$TESTBED_SAVEAS")
state=$dir/.webtorrent
mkdir -p "$state/home" "$state/tmp"
export HOME="$state/home" XDG_CONFIG_HOME="$state/home/.config" XDG_CACHE_HOME="$state/home/.cache"
export XDG_DATA_HOME="$state/home/.local/share" XDG_STATE_HOME="$state/home/.local/state"
export TMPDIR="$state/tmp"
cd "$state"
rm -f done
# A free port for webtorrent's HTTP server (it would take a random one if its default were
# busy, and not say which).
port=$(node -e 'const s = require("net").createServer().listen(0, () => { console.log(s.address().port); s.close() })')
player_clock
"$wt" download "$TESTBED_TORRENT" --out "$dir" --port "$port" --quiet \
    --upload-limit "$TESTBED_MAX_UPLOAD_RATE" --on-done "touch done" &
wt_pid=$!
# webtorrent ends on SIGTERM (its graceful exit), or SIGKILL after 5 s.
trap 'player_stop "$wt_pid"; exit 143' TERM
trap 'player_stop "$wt_pid"; exit 130' INT

# The stream's address, from webtorrent's own index pages; then the player, at its time.
base=http://127.0.0.1:$port
url=
while [ ! -e done ] && kill -0 "$wt_pid" 2>/dev/null; do
    if [ -z "$url" ]; then
        hash=$(curl -s -m 2 "$base/webtorrent/" |
            sed -n 's|.*href="/webtorrent/\([0-9a-f]\{40\}\)".*|\1|p' | head -n 1) || true
        [ -z "$hash" ] || url=$(curl -s -m 2 "$base/webtorrent/$hash" |
            sed -n 's|.*href="\(/webtorrent/[^"]*\)".*|\1|p' | head -n 1 |
            sed "s/&amp;/\&/g; s/&#39;/'/g") || true
    fi
    if [ -n "$url" ] && player_due; then
        player_play "$base$url"
    fi
    sleep 0.1
done
if [ -e done ]; then
    player_stop "$wt_pid"
    exit 0
fi
# webtorrent ended before the download did: its exit code (1 if it said 0).
player_end
code=0
wait "$wt_pid" || code=$?
echo "webtorrent_stream.sh: webtorrent ended (exit $code) before the download was complete" >&2
[ "$code" -ne 0 ] || code=1
exit "$code"

#!/bin/sh
# aria2c as my client, unmodified, in one of its streaming modes:
#
#   testbed run examples/aria2_stream.sh [inorder|geom]       (default: inorder)
#   testbed compare --client 'examples/aria2_stream.sh geom' --policy deadline ...
#
# aria2c never calls the VoD server, so the referee scores it (late bytes; docs/referee.md).
# Its settings are aria2c's defaults but for the lab's upload cap, leaving once the file is
# complete (--seed-time=0), and the streaming piece selector. HOME and XDG_* point into the run
# folder, where aria2c then keeps its DHT state (by default in ~/.cache/aria2). Needs: aria2
# (Debian).
set -e
case ${1:-} in
'' | -*) selector=inorder ;; # no argument, or the config's args template: the default
inorder | geom | default | random) selector=$1 ;;
*)
    echo "aria2_stream.sh: unknown selector '$1' (inorder or geom)" >&2
    exit 2
    ;;
esac
dir=$(dirname "$TESTBED_SAVEAS")
state=$dir/.aria2
mkdir -p "$state"
export HOME="$state" XDG_CACHE_HOME="$state/.cache" XDG_CONFIG_HOME="$state/.config"
exec aria2c --seed-time=0 --stream-piece-selector="$selector" \
    --max-overall-upload-limit="${TESTBED_MAX_UPLOAD_RATE%.*}K" \
    --dir="$dir" "$TESTBED_TORRENT"

#!/bin/sh
# aria2c as my client, unmodified, in one of its streaming modes:
#
#   testbed run examples/aria2_stream.sh [inorder|geom]       (default: inorder)
#   testbed compare --client 'examples/aria2_stream.sh geom' --policy deadline ...
#
# aria2c never calls the VoD server, so the referee scores it (late bytes; README, The referee).
# Its settings are aria2c's defaults but for the lab's upload cap, leaving once the file is
# complete (--seed-time=0), and the streaming piece selector. Needs: aria2 (Debian).
set -e
selector=${1:-inorder}
dir=$(dirname "$TESTBED_SAVEAS")
mkdir -p "$dir"
exec aria2c --seed-time=0 --stream-piece-selector="$selector" \
    --max-overall-upload-limit="${TESTBED_MAX_UPLOAD_RATE%.*}K" \
    --dir="$dir" "$TESTBED_TORRENT"

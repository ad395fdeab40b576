#!/bin/sh
# transmission-cli as my client: a plain client with no streaming mode, the baseline.
#
#   testbed run examples/transmission_plain.sh
#
# It never calls the VoD server: the referee scores it. Its settings are Transmission's
# defaults (its config folder inside the run folder, not in $HOME), but for the lab's upload cap
# (-u, in Transmission's kB/s of 1000 B). transmission-cli seeds forever once done, so this
# wrapper ends it when its finish script runs. Needs: transmission-cli (Debian).
set -e
dir=$(dirname "$TESTBED_SAVEAS")
mkdir -p "$dir/.transmission"
done_flag="$dir/.transmission/done"
rm -f "$done_flag"
printf '#!/bin/sh\ntouch "%s"\n' "$done_flag" > "$dir/.transmission/finished.sh"
chmod +x "$dir/.transmission/finished.sh"
up=$(awk "BEGIN { printf \"%d\", ${TESTBED_MAX_UPLOAD_RATE:-0} * 1024 / 1000 }")
transmission-cli -g "$dir/.transmission/config" -w "$dir" -u "$up" \
    -f "$dir/.transmission/finished.sh" "$TESTBED_TORRENT" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid; exit 143' TERM INT
while [ ! -e "$done_flag" ] && kill -0 $pid 2>/dev/null; do sleep 0.2; done
kill $pid 2>/dev/null || true
wait $pid || true

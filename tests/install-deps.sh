#!/usr/bin/env bash
# Installs, only when missing, what the lab's tests and benchmarks need beyond the Rust
# toolchain (Debian packages):
#   tests/install-deps.sh         the real BitTorrent clients of the interop tests, headless
#                                 Chromium + ChromeDriver for the status-page test, and iproute2
#                                 for the two-host test's namespaces, Slurm and munge for the
#                                 single-node cluster of the Slurm test (make test)
#   tests/install-deps.sh bench   also the benchmark anchors: opentracker, wrk (make bench)
set -euo pipefail
need=()
command -v aria2c >/dev/null 2>&1 || need+=(aria2)
command -v transmission-cli >/dev/null 2>&1 || need+=(transmission-cli)
command -v qbittorrent-nox >/dev/null 2>&1 || need+=(qbittorrent-nox)
command -v mktorrent >/dev/null 2>&1 || need+=(mktorrent)
/usr/bin/python3 -c 'import libtorrent' >/dev/null 2>&1 || need+=(python3-libtorrent)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v slurmctld >/dev/null 2>&1 || need+=(slurm-wlm)
command -v munged >/dev/null 2>&1 || need+=(munge)
if [ "${1:-}" = bench ]; then
  command -v opentracker >/dev/null 2>&1 || need+=(opentracker)
  command -v wrk >/dev/null 2>&1 || need+=(wrk)
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null 2>&1; then
    echo "install-deps: missing ${need[*]} and not root: the tests and benchmarks that use them will skip or fail" >&2
    exit 0
  fi
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "install-deps: installing ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

#!/usr/bin/env bash
# Installs what `make test` needs beyond the Rust toolchain, only when it is missing:
# the real BitTorrent clients of the interop tests (Debian packages).
set -euo pipefail
need=()
command -v aria2c >/dev/null 2>&1 || need+=(aria2)
command -v transmission-cli >/dev/null 2>&1 || need+=(transmission-cli)
/usr/bin/python3 -c 'import libtorrent' >/dev/null 2>&1 || need+=(python3-libtorrent)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null 2>&1; then
    echo "install-deps: missing ${need[*]} and not root: the interop tests will be skipped" >&2
    exit 0
  fi
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "install-deps: installing ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

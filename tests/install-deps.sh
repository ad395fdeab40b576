#!/usr/bin/env bash
# Installs, only when missing, what the lab's tests and benchmarks need beyond the Rust
# toolchain (Debian packages):
#   tests/install-deps.sh         the real BitTorrent clients of the interop tests, headless
#                                 Chromium + ChromeDriver for the status-page test, and iproute2
#                                 for the two-host test's namespaces, Slurm and munge for the
#                                 single-node cluster of the Slurm test (make test)
#                                 and Shadow 3.3.0, built from tests/shadow/ into /opt/shadow
#                                 for the Shadow engine's tests
#   tests/install-deps.sh bench   also the benchmark anchors: opentracker, wrk (make bench), and
#                                 aquatic_http (cargo, into /opt/aquatic)
set -euo pipefail
need=()
command -v aria2c >/dev/null 2>&1 || need+=(aria2)
command -v transmission-cli >/dev/null 2>&1 || need+=(transmission-cli)
command -v qbittorrent-nox >/dev/null 2>&1 || need+=(qbittorrent-nox)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v mktorrent >/dev/null 2>&1 || need+=(mktorrent)
/usr/bin/python3 -c 'import libtorrent' >/dev/null 2>&1 || need+=(python3-libtorrent)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v slurmctld >/dev/null 2>&1 || need+=(slurm-wlm)
command -v munged >/dev/null 2>&1 || need+=(munge)
# Shadow's build needs (its source is tests/shadow/shadow-3.3.0.tar.gz: no git host needed).
shadow_missing=false
if ! [ -x /opt/shadow/bin/shadow ]; then
  shadow_missing=true
  for p in cmake libclang-dev libglib2.0-dev python3-networkx pkg-config xz-utils util-linux \
    libc-dbg netbase g++; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
  done
fi
if [ "${1:-}" = bench ]; then
  command -v opentracker >/dev/null 2>&1 || need+=(opentracker)
  command -v wrk >/dev/null 2>&1 || need+=(wrk)
fi
# webtorrent-cli (npm) for examples/webtorrent_stream.sh, in /opt/webtorrent: node-datachannel
# 0.33 brings its prebuilt binary from npm (0.32 fetches it from GitHub at install time), and
# --ignore-scripts skips ip-set 3.0.0's stray `npx only-allow pnpm` preinstall, which fails
# under npm (the other native modules ship prebuilt binaries in their packages).
if [ ! -x /opt/webtorrent/node_modules/.bin/webtorrent ] && command -v npm >/dev/null 2>&1 &&
  { [ "$(id -u)" = 0 ] || [ -w /opt ]; }; then
  echo "install-deps: installing webtorrent-cli into /opt/webtorrent (npm)"
  mkdir -p /opt/webtorrent
  printf '%s\n' '{"private": true,' '"dependencies": {"webtorrent-cli": "^6.0.1"},' \
    '"overrides": {"node-datachannel": "^0.33.4"}}' > /opt/webtorrent/package.json
  (cd /opt/webtorrent && npm install --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
fi
# rqbit (crates.io) for examples/rqbit_stream.sh, in /opt/rqbit: rustls instead of OpenSSL, no
# web UI (its build runs npm), no Postgres or Prometheus; about 5 minutes on 2 cores.
if ! [ -x /opt/rqbit/bin/rqbit ] && command -v cargo >/dev/null 2>&1 &&
  { [ "$(id -u)" = 0 ] || [ -w /opt ]; }; then
  echo "install-deps: building rqbit 9.1.0 into /opt/rqbit (cargo install, a few minutes)"
  cargo install rqbit@9.1.0 --locked --no-default-features --features rust-tls \
    --root /opt/rqbit --quiet
fi
# aquatic_http (crates.io), the strongest open HTTP tracker, the tracker's second anchor in
# make bench. Not --locked: the `metrics` crate in its lockfile no longer builds on a current
# rustc. About 7 minutes on 2 cores.
if [ "${1:-}" = bench ] && ! [ -x /opt/aquatic/bin/aquatic_http ] && command -v cargo >/dev/null 2>&1 &&
  { [ "$(id -u)" = 0 ] || [ -w /opt ]; }; then
  echo "install-deps: building aquatic_http into /opt/aquatic (cargo install, a few minutes)"
  cargo install aquatic_http --root /opt/aquatic --quiet
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
# Shadow 3.3.0 (a discrete-event network simulator; not packaged) from the vendored source:
# about 9 minutes on 2 cores. `setup build` and `setup install` must see the same environment,
# or install builds again.
if $shadow_missing && command -v cargo >/dev/null 2>&1 && { [ "$(id -u)" = 0 ] || [ -w /opt ]; }; then
  echo "install-deps: building Shadow 3.3.0 into /opt/shadow (about 9 minutes)"
  src=$(mktemp -d)
  tar xzf "$(dirname "$0")/shadow/shadow-3.3.0.tar.gz" -C "$src"
  # A failed build leaves the other tests to run: the Shadow tests then skip (fail under
  # CI=true), and the build's output is kept to read.
  if ! (cd "$src"/shadow-3.3.0 && ./setup build --prefix /opt/shadow -j 2 &&
    ./setup install) >"$src/build.log" 2>&1; then
    echo "install-deps: Shadow did not build; its output: $src/build.log" >&2
  else
    rm -rf "$src"
  fi
fi

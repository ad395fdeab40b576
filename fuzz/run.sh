#!/usr/bin/env bash
# Fuzz every target for SECS seconds each (default 600), with cargo-fuzz (libFuzzer + ASan).
#   fuzz/run.sh [SECS] [TARGET...]
# Installs cargo-fuzz when missing. The machine's stable toolchain is used, with
# RUSTC_BOOTSTRAP=1 for the sanitizer flags cargo-fuzz passes. New inputs that reach new code
# are added to fuzz/corpus/TARGET (commit them after `cargo fuzz cmin TARGET`); a crash leaves
# its input in fuzz/artifacts/TARGET and fails this script.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(bencode metainfo wire announce)
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --quiet
export RUSTC_BOOTSTRAP=1
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  echo "fuzz: $t for $secs s"
  log="fuzz/artifacts/$t.log"
  mkdir -p fuzz/artifacts
  status=0
  cargo fuzz run --fuzz-dir fuzz "$t" "fuzz/corpus/$t" -- \
    -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  grep -E "^(stat::number_of_executed_units|stat::new_units_added)|ERROR|SUMMARY|Test unit written" "$log" || true
  if [ $status -ne 0 ]; then
    tail -30 "$log" >&2
    echo "fuzz: $t failed (exit $status); the full log is $log" >&2
    exit 1
  fi
done

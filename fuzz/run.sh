#!/usr/bin/env bash
# `make fuzz` / `make fuzz-smoke`: builds every cargo-fuzz target of fuzz/ (nightly, address
# sanitizer, its own target dir), writes the seed corpus, runs each target for FUZZ_SECONDS,
# and prints per target the executions reached without a crash. A crash, a timeout or an
# out-of-memory input fails the run, naming its reproducer (fuzz/artifacts/<target>/...).
#
# Settings (environment): FUZZ_SECONDS (seconds per target; default 120, but 1500 for
# outbound_reader, 300 for proxy_request and 180 for admin_request, the slow ones: a real
# SQLite open and a real HTTP connection per input, so that every target passes 1,000,000
# executions on two cores), FUZZ_TARGETS (default all),
# FUZZ_TARGET_DIR (default /var/tmp/crabpot-fuzz-target), FUZZ_WORK_DIR (corpus and logs,
# default /var/tmp/crabpot-fuzz), FUZZ_TOOLCHAIN (default nightly).
set -euo pipefail
cd "$(dirname "$0")/.."

default_seconds() {
  case "$1" in
    outbound_reader) echo 1500 ;;
    proxy_request) echo 300 ;;
    admin_request) echo 180 ;;
    *) echo 120 ;;
  esac
}
targets="${FUZZ_TARGETS:-outbound_reader outbound_content cli_line proxy_request admin_request live_event platform_event}"
target_dir="${FUZZ_TARGET_DIR:-/var/tmp/crabpot-fuzz-target}"
work_dir="${FUZZ_WORK_DIR:-/var/tmp/crabpot-fuzz}"
toolchain="${FUZZ_TOOLCHAIN:-nightly}"
triple="$(rustc +"$toolchain" -vV | sed -n 's/^host: //p')"

if ! cargo +"$toolchain" fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz into ~/.cargo/bin (a few minutes, once)" >&2
  cargo install cargo-fuzz --locked
fi

build_started=$SECONDS
cargo +"$toolchain" fuzz build --target-dir "$target_dir"
build_seconds=$((SECONDS - build_started))

# The working corpus lives outside the clone: libFuzzer adds every input that finds new
# coverage to it, and later runs start from there. The seeds are rewritten each run.
mkdir -p "$work_dir/corpus" "$work_dir/logs"
# The sanitized SQLite registers some globals twice: a known false positive (cargo fuzz run
# turns the same check off).
ASAN_OPTIONS="detect_odr_violation=0" "$target_dir/$triple/release/seed_corpus" "$work_dir/corpus"

failed=()
rows=()
for target in $targets; do
  seconds="${FUZZ_SECONDS:-$(default_seconds "$target")}"
  log="$work_dir/logs/$target.log"
  binary="$target_dir/$triple/release/$target"
  artifacts="fuzz/artifacts/$target"
  mkdir -p "$artifacts"
  echo "fuzz: $target for ${seconds}s (log: $log)" >&2
  status=0
  # The binary just built, run directly: `cargo fuzz run` would first rebuild whatever
  # changed in the tree since the build above. Same ASAN_OPTIONS as `cargo fuzz run`.
  ASAN_OPTIONS="detect_odr_violation=0" "$binary" -artifact_prefix="$artifacts/" \
    -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 \
    "$work_dir/corpus/$target" >"$log" 2>&1 || status=$?
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
  if [ -z "$runs" ]; then
    runs="$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n 1)"
  fi
  runs="${runs:-0}"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)"
  rate="${rate:-$((runs / (seconds > 0 ? seconds : 1)))}"
  if [ "$status" -eq 0 ]; then
    result="ok"
  else
    reproducer="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)"
    result="FAILED (exit $status) reproducer: ${reproducer:-none written, see $log}"
    failed+=("$target")
    echo "---- last lines of $log ----" >&2
    tail -n 40 "$log" >&2
    if [ -n "$reproducer" ]; then
      echo "fuzz: reproduce with: ASAN_OPTIONS=detect_odr_violation=0 $binary $reproducer" >&2
      echo "fuzz: (or cargo +$toolchain fuzz run --target-dir $target_dir $target $reproducer)" >&2
    fi
  fi
  rows+=("| $target | $seconds | $runs | $rate | $result |")
done

echo
echo "## cargo fuzz (build ${build_seconds}s)"
echo
echo "| target | seconds | executions without a crash | exec/s | result |"
echo "|---|---:|---:|---:|---|"
printf '%s\n' "${rows[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
  echo
  echo "fuzz: FAILED: ${failed[*]}" >&2
  exit 1
fi

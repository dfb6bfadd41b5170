#!/usr/bin/env bash
# test.sh — install, build and run the whole test suite twice: a normal build, then one under
# AddressSanitizer + UndefinedBehaviorSanitizer (any report fails the run); then the fuzz targets
# on a fixed number of inputs each. Ends with one line counting the cmocka test cases of both runs.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/fetch-models.sh # the real checkpoints of the suite `real` (skipped without them)

status=0
run_suite() { # build-dir [meson setup options...]
  local dir=$1; shift
  [ -d "$dir" ] || meson setup "$dir" "$@"
  meson compile -C "$dir"
  meson test -C "$dir" --print-errorlogs || status=1
}

run_suite build
export ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
run_suite build-sanitize -Db_sanitize=address,undefined -Db_lundef=false

# The fuzz targets (tests/fuzz), briefly and from a fixed seed, on their seed corpora: a crash or a
# broken error model fails the run. `./scripts/fuzz.sh SECONDS [target]` explores for longer.
./scripts/fuzz.sh || status=1

passed=0 failed=0
for log in build/meson-logs/testlog.txt build-sanitize/meson-logs/testlog.txt; do
  p=$(awk '/^\[  PASSED  \] [0-9]+ test/ {s += $4} END {print s + 0}' "$log")
  f=$(awk '/^\[  FAILED  \] [0-9]+ test/ {s += $4} END {print s + 0}' "$log")
  passed=$((passed + p)) failed=$((failed + f))
done
echo "cmocka: $passed passed, $failed failed"
exit $status

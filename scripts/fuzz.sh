#!/usr/bin/env bash
# fuzz.sh — build the libFuzzer targets (tests/fuzz) with clang, ASan and UBSan, and run each on
# its committed seed corpus. New inputs go to a scratch folder, never into the repository; a crash
# leaves its input in build-fuzz/crashes/ and fails the run.
#
#   ./scripts/fuzz.sh            # every target: 2000 inputs from seed 1 (CI: the same run each time)
#   ./scripts/fuzz.sh 1800 ops   # fuzz_ops for 30 minutes from a random seed (exploring)
#
# CI runs a fixed number of inputs from a fixed seed, so a green run stays green: exploring for new
# defects is a separate, longer run, and what it finds becomes a regression test or a corpus file.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-}
only=${2:-}
if [ -n "$seconds" ]; then
  budget=(-max_total_time="$seconds"); what="${seconds}s"
else
  budget=(-runs=2000 -seed=1); what="2000 inputs from seed 1"
fi
dir=build-fuzz
if [ ! -d "$dir" ]; then
  CC=clang CXX=clang++ meson setup "$dir" -Dfuzz=true -Dvulkan=disabled \
    -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
fi
targets=$(sed -n "s/^ *\['\(fuzz_[a-z_]*\)'.*/\1/p" tests/fuzz/meson.build)
mkdir -p "$dir/crashes"
status=0
for t in $targets; do
  [ -n "$only" ] && [ "$t" != "fuzz_$only" ] && continue
  ninja -C "$dir" "tests/fuzz/$t" >/dev/null
  scratch=$(mktemp -d)
  mkdir -p "tests/fuzz/corpus/$t"
  echo "fuzz: $t, $what"
  if ! ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=1 \
       "$dir/tests/fuzz/$t" "${budget[@]}" -max_len=4096 -rss_limit_mb=4096 \
       -print_final_stats=1 -artifact_prefix="$dir/crashes/$t-" \
       "$scratch" "tests/fuzz/corpus/$t" 2>"$dir/$t.log"; then
    echo "fuzz: $t FAILED; see $dir/$t.log and $dir/crashes/" >&2
    tail -40 "$dir/$t.log" >&2
    status=1
  fi
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$dir/$t.log" | sed 's/^/  /'
  rm -rf "$scratch"
done
exit $status

#!/bin/sh
# same_as_one_rank.sh — 2 ranks train the adapter 1 rank trains, with the same loss curve, for
# the same global batch (batch × accumulate): micro-batches shared evenly, unevenly (3 over 2
# ranks) and with dropout (each micro-batch's masks follow it to whichever rank runs it). Rank 0
# alone writes: one metrics line per step, one summary. Backend: cpu, or vulkan as argument 5.
. "$(dirname "$0")/lib.sh"
B=${5:-cpu}
if [ "$B" = vulkan ] && ! "$K" info 2>/dev/null | grep -q "the backend picks"; then
  echo "no Vulkan device: skipped"; exit 77
fi
cases="even --steps 3 --batch 2 --accumulate 2
uneven --steps 2 --batch 1 --accumulate 3 --dropout 0.1"
# lavapipe is slow: one small LoRA case there.
[ "$B" = vulkan ] && cases="even --steps 2 --batch 1 --accumulate 2 --adapter lora"
echo "$cases" | while read -r c; do
  set -- $c
  name=$1; shift
  # stdin from /dev/null: mpirun would forward the rest of the case list to rank 0.
  "$K" train $RUN --backend "$B" "$@" --out "$d/$name-1" </dev/null >"$d/$name-1.log" 2>&1 ||
    fail "$name: 1 rank"
  $MPIRUN -np 2 "$K" train $RUN --backend "$B" "$@" --out "$d/$name-2" </dev/null \
    >"$d/$name-2.log" 2>&1 || fail "$name: 2 ranks"
  same "$name-1" "$name-2"
  [ "$(grep -c '"loss"' "$d/$name-2/metrics.jsonl")" -eq "$2" ] || fail "$name: metrics lines"
  [ "$(grep -c 'trainable params' "$d/$name-2.log")" -eq 1 ] || fail "$name: one summary"
  grep -q "rank 1 of 2" "$d/$name-2.log" || fail "$name: rank 1 did not run"
done || exit 1
echo "2 ranks = 1 rank on $B"

#!/bin/sh
# resume_other_ranks.sh — a checkpoint records the global data position, so a run stopped on 2
# ranks resumes on 1 (and one stopped on 1 resumes on 2) and ends where a straight 1-rank run
# ends: the same adapter and loss curve within 1e-6.
. "$(dirname "$0")/lib.sh"
T="$RUN --backend cpu --steps 4 --batch 1 --accumulate 2 --checkpoint-every 1"
"$K" train $T --out "$d/straight" >"$d/straight.log" 2>&1 || fail "straight run"
$MPIRUN -np 2 "$K" train $T --out "$d/2then1" --stop-at 2 >"$d/2then1-a.log" 2>&1 ||
  fail "2 ranks, stopped at step 2"
grep -aq '"ranks":"2"' "$d/2then1/checkpoint.safetensors" || fail "the checkpoint's ranks"
"$K" train $T --out "$d/2then1" --resume >"$d/2then1-b.log" 2>&1 || fail "1 rank resuming"
same straight 2then1
"$K" train $T --out "$d/1then2" --stop-at 2 >"$d/1then2-a.log" 2>&1 || fail "1 rank, stopped"
$MPIRUN -np 2 "$K" train $T --out "$d/1then2" --resume >"$d/1then2-b.log" 2>&1 ||
  fail "2 ranks resuming"
same straight 1then2
echo "resumed across 2 -> 1 and 1 -> 2 ranks"

#!/bin/sh
# rank_fails.sh — a rank that fails stops the whole job with an error naming it, never a hang:
# bad input on one rank before training (the job is aborted), bad input on one rank inside a step
# (every rank agrees to stop and exits cleanly with status 1), and a rank killed mid-run (mpirun
# ends the job); the last checkpoint written stays whole and a 1-rank run resumes from it.
. "$(dirname "$0")/lib.sh"
M="--backend cpu --model $FX/models/llama --task plain --lr 1e-2 --batch 2 --accumulate 2"
ok_data="--data $FX/tasks/plain/plain.jsonl"
# Every status below must come from the job ending, not from this limit.
LIMIT="timeout 60" # status 124 when it expires

# 1. Rank 1's data file is missing: it fails before training, while rank 0 waits for it.
$LIMIT $MPIRUN -np 1 "$K" train $M $ok_data --steps 4 --out "$d/a" : \
  -np 1 "$K" train $M --data "$d/none.jsonl" --steps 4 --out "$d/a" >"$d/missing.log" 2>&1
r=$?
[ $r -ne 0 ] && [ $r -ne 124 ] || fail "missing data: status $r"
grep -q "rank 1 of 2: .*none.jsonl" "$d/missing.log" || fail "missing data: no message naming rank 1"

# 2. Rank 1's items do not fit --max-length: its first step fails; every rank stops together.
long=$(printf 'word %.0s' $(seq 200))
for i in 0 1 2 3; do
  printf '{"question": "q%d", "choices": ["%s", "b"], "answer": 0}\n' $i "$long"
done >"$d/long.jsonl"
$LIMIT $MPIRUN -np 1 "$K" train $M $ok_data --steps 4 --max-length 64 --out "$d/b" : \
  -np 1 "$K" train $M --data "$d/long.jsonl" --steps 4 --max-length 64 --out "$d/b" \
  >"$d/step.log" 2>&1
r=$?
[ $r -ne 0 ] && [ $r -ne 124 ] || fail "bad item in a step: status $r"
grep -q "rank 0 of 2: kg_trainer_step: rank 1 of 2 failed" "$d/step.log" ||
  fail "bad item in a step: rank 0 does not name rank 1"
grep -q "rank 1 of 2: " "$d/step.log" || fail "bad item in a step: rank 1 says nothing"
grep -q "MPI_ABORT" "$d/step.log" && fail "bad item in a step: aborted instead of agreeing"

# 3. Rank 1 is killed (SIGKILL) once rank 0 has logged 3 steps (a checkpoint follows every step);
#    1 rank resumes from the last checkpoint to step 8.
cat >"$d/killed.sh" <<KILL
"$K" train $M $ok_data --steps 30 --checkpoint-every 1 --out "$d/c" &
p=\$!
until [ "\$(cat "$d/c/metrics.jsonl" 2>/dev/null | wc -l)" -ge 3 ]; do sleep 0.05; done
kill -9 \$p
wait \$p
KILL
$LIMIT $MPIRUN -np 1 "$K" train $M $ok_data --steps 30 --checkpoint-every 1 --out "$d/c" : \
  -np 1 sh "$d/killed.sh" >"$d/killed.log" 2>&1
r=$?
[ $r -ne 0 ] && [ $r -ne 124 ] || fail "killed rank: status $r"
[ ! -f "$d/c/adapter_model.safetensors" ] || fail "killed rank: the run finished anyway"
"$K" train $M $ok_data --steps 30 --out "$d/c" --resume --stop-at 8 \
  >"$d/resumed.log" 2>&1 || fail "killed rank: no 1-rank resume from its last checkpoint"
tail -n 1 "$d/c/metrics.jsonl" | grep -q '"step": 8,' || fail "killed rank: the resume did not reach step 8"
echo "every failure ended the job with an error"

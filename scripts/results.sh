#!/usr/bin/env bash
# results.sh — the paper's experiments in kind, on real data and sized for a shared 2-core
# machine (docs/results.md says what was cut): adapters compared on all-MiniLM-L6-v2 (BERT, a
# multiple-choice head) and SmolLM2-135M-Instruct (log-likelihood scoring), a continual sequence
# CommonsenseQA → OpenBookQA, and docs/results.md's tables and figures made from what they wrote.
#
#   scripts/results.sh [lr|minilm|continual|smol|report ...]   (default: all, in that order)
#   settings: LR_MINILM, LR_SMOL, MINILM_TASK (commonsense_qa), CONTINUAL_SEEDS ("0 1 2")
#
# Every hyperparameter is given on the command line (none is left to a default that may change).
# Outputs go to $RESULTS_OUT (default build/results); `report` writes the tables into
# docs/results.md between its markers and copies the figures to docs/figures/.
set -euo pipefail
cd "$(dirname "$0")/.."

M=${KG_MODELS:-$HOME/.cache/krongrad/models}
OUT=${RESULTS_OUT:-build/results}
K=${KRONGRAD:-build/krongrad}
MINILM=$M/all-minilm-l6-v2
SMOL=$M/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
mkdir -p "$OUT/data"
say() { echo "results: $(date -u +%H:%M:%S) $*"; }
# Every timing printed beside the load it ran under.
load() { say "load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/load.log"; }

# The budget: training items are the first N of each task's train.jsonl, held-out items the
# first N of heldout.jsonl (fetch-models.sh's hashed split).
subset() { # task-folder split n -> path
  local f=$OUT/data/$1-$2-$3.jsonl
  [ -s "$f" ] || head -n "$3" "$M/$1/$2.jsonl" >"$f"
  echo "$f"
}

# The settings every run shares; the learning rate is the one `lr` chose (LR_MINILM, LR_SMOL).
LR_MINILM=${LR_MINILM:-8e-3}
MINILM_TASK=${MINILM_TASK:-commonsense_qa} MINILM_TASK_DIR=${MINILM_TASK_DIR:-commonsense-qa}
LR_SMOL=${LR_SMOL:-5e-3} # the demo's rate, at which both adapters learn (issue 14's table)
common=(--rank 8 --alpha 16 --batch 8 --warmup 2 --schedule linear --optimizer adamw --clip 1
  --weight-decay 0 --dropout 0)
configs=(--config lora:r8 --config lora:r16 --config kronlora:r8:2x4 --config kronlora:r8:4x4
  --config lokr:r8)

phase_lr() { # a rate at which each adapter learns: MiniLM, one seed, the final accuracy only
  local tr ev lr
  tr=$(subset piqa train 400) ev=$(subset piqa heldout 100)
  for lr in 5e-4 2e-3 8e-3; do
    load
    nice -n 19 "$K" compare --model "$MINILM" --task piqa --data "$tr" --eval-data "$ev" \
      "${common[@]}" --max-length 128 --steps 20 --lr "$lr" --seeds 1 --no-matched \
      --config lora:r8 --config kronlora:r8:2x4 --config lokr:r8 --out "$OUT/lr-minilm-$lr"
  done
}

phase_minilm() { # every configuration × 3 seeds, with learning curves
  local tr ev
  tr=$(subset "$MINILM_TASK_DIR" train 300) ev=$(subset "$MINILM_TASK_DIR" heldout 40)
  load
  nice -n 19 "$K" compare --model "$MINILM" --task "$MINILM_TASK" --data "$tr" --eval-data "$ev" \
    "${common[@]}" --max-length 64 --steps 24 --lr "$LR_MINILM" --seeds 3 --eval-every 12 \
    --adapter-bits 8,4 "${configs[@]}" --out "$OUT/minilm-$MINILM_TASK"
  load
}

phase_continual() { # CommonsenseQA, then OpenBookQA: the accuracy matrix and forgetting
  local a seed name csqa_tr csqa_ev obqa_tr obqa_ev
  csqa_tr=$(subset commonsense-qa train 300) csqa_ev=$(subset commonsense-qa heldout 40)
  obqa_tr=$(subset openbookqa train 300) obqa_ev=$(subset openbookqa heldout 40)
  for a in "kronlora --kron-a 2x4" "lora"; do
    for seed in ${CONTINUAL_SEEDS:-0 1 2}; do
      name=continual-${a%% *}-$seed
      load
      # shellcheck disable=SC2086 # $a is the adapter and its flags
      nice -n 19 "$K" train --model "$MINILM" --tasks commonsense_qa,openbookqa \
        --data "$csqa_tr" --data "$obqa_tr" --eval-data "$csqa_ev" --eval-data "$obqa_ev" \
        --adapter $a "${common[@]}" --max-length 64 --steps 16 --lr "$LR_MINILM" \
        --seed "$seed" --out "$OUT/$name" >"$OUT/$name.txt"
      cat "$OUT/$name.txt"
    done
  done
}

phase_smol() { # the decoder: two configurations, few items and steps, no curve (the cost)
  local tr ev
  tr=$(subset piqa train 200) ev=$(subset piqa heldout 24)
  load
  nice -n 19 "$K" compare --model "$SMOL" --task piqa --data "$tr" --eval-data "$ev" \
    "${common[@]}" --loss choices --steps 10 --lr "$LR_SMOL" --seeds 3 --adapter-bits 8,4 \
    --no-matched --config lora:r8 --config kronlora:r8:2x4 --out "$OUT/smol-piqa"
  load
}

phase_report() {
  # shellcheck disable=SC2086 # RESULTS_LOGS: more logs whose "load:" lines to show
  python3 scripts/results_report.py "$OUT" docs/results.md docs/figures "$OUT/load.log" \
    ${RESULTS_LOGS:-}
}

# All in one function, so that bash has read the whole file before running any of it (an edit
# made while it runs changes nothing).
main() {
  local phases=("$@") p
  [ ${#phases[@]} -gt 0 ] || phases=(lr minilm continual smol report)
  cp "$K" "$OUT/krongrad" # later phases run the binary this run began with
  K=$OUT/krongrad
  for p in "${phases[@]}"; do
    say "phase $p"
    "phase_$p"
  done
  say "done"
}
main "$@"; exit  # exit on the same line: nothing after it is read

#!/usr/bin/env bash
# results.sh — the paper's experiments in kind, on real data and sized for a shared 2-core
# machine (docs/results.md says what was cut): adapters compared on all-MiniLM-L6-v2 (BERT, a
# multiple-choice head) and SmolLM2-135M-Instruct (log-likelihood scoring), a continual sequence
# CommonsenseQA → OpenBookQA, and docs/results.md's tables and figures made from what they wrote.
#
#   scripts/results.sh [lr|minilm|continual|smol|report ...]   (default: all, in that order)
#   settings: CSQA_STEPS (120), SMOL_STEPS (32), SMOL_EVAL (100), STAGE_STEPS (60),
#   CONTINUAL_SEEDS ("0 1")
#
# Every hyperparameter but the learning rate is given on the command line; the rate is each
# adapter's default (phase lr measured them), and the tables print the rate each row used.
# Outputs go to $RESULTS_OUT (default build/results); `report` writes the tables into
# docs/results.md between its markers and copies the figures to docs/figures/.
set -euo pipefail
cd "$(dirname "$0")/.."

M=${KG_MODELS:-$HOME/.cache/krongrad/models}
OUT=${RESULTS_OUT:-build/results}
K=${KRONGRAD:-build/krongrad}
MINILM=$M/all-minilm-l6-v2
SMOL=$M/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
mkdir -p "$OUT"
say() { echo "results: $(date -u +%H:%M:%S) $*"; }
# Every timing printed beside the load it ran under.
load() { say "load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/load.log"; }

# Every run trains on a task's whole train.jsonl and scores its heldout.jsonl (fetch-models.sh's
# hashed split); only the decoder's scoring is cut to the first SMOL_EVAL held-out items.
# The settings every run shares. No --lr: each adapter trains at its default rate
# (kg_train_config_default), which phase `lr` measured on CommonsenseQA.
common=(--rank 8 --alpha 16 --batch 8 --warmup 6 --schedule linear --optimizer adamw --clip 1
  --weight-decay 0 --dropout 0)
configs=(--config lora:r8 --config lora:r16 --config kronlora:r8:2x4 --config kronlora:r8:4x4
  --config lokr:r8)
CSQA_STEPS=${CSQA_STEPS:-120} # ≈ one epoch of CommonsenseQA's 972 training items at batch 8
SMOL_STEPS=${SMOL_STEPS:-32}  # 256 of PIQA's 1,206 training items: the decoder step is 5× dearer
SMOL_EVAL=${SMOL_EVAL:-100}   # held-out PIQA items scored (of 294)
STAGE_STEPS=${STAGE_STEPS:-60} # per continual stage

phase_lr() { # the learning rates: MiniLM on all of CommonsenseQA, one seed, a curve every 40
  local tr ev run a lr
  tr=$M/commonsense-qa/train.jsonl ev=$M/commonsense-qa/heldout.jsonl
  for run in lora:2e-3 lora:5e-3 kronlora:5e-4 kronlora:1e-3 kronlora:2e-3 kronlora:3e-3 \
    kronlora:5e-3 lokr:2e-4 lokr:2e-3; do
    a=${run%%:*} lr=${run#*:}
    load
    nice -n 19 "$K" train --model "$MINILM" --task commonsense_qa --data "$tr" --eval-data "$ev" \
      --adapter "$a" --lr "$lr" "${common[@]}" --max-length 64 --steps "$CSQA_STEPS" \
      --eval-every 40 --out "$OUT/lr-$a-$lr" >"$OUT/lr-$a-$lr.txt" 2>&1
    tail -n 3 "$OUT/lr-$a-$lr.txt"
  done
}

phase_minilm() { # every configuration × 3 seeds on all of CommonsenseQA, with learning curves
  load
  nice -n 19 "$K" compare --model "$MINILM" --task commonsense_qa \
    --data "$M/commonsense-qa/train.jsonl" --eval-data "$M/commonsense-qa/heldout.jsonl" \
    "${common[@]}" --max-length 64 --steps "$CSQA_STEPS" --seeds 3 --eval-every 40 \
    --adapter-bits 8,4 "${configs[@]}" --out "$OUT/minilm-commonsense_qa"
  load
}

phase_continual() { # CommonsenseQA, then OpenBookQA: the accuracy matrix and forgetting
  local a seed name
  for a in "kronlora --kron-a 2x4" "lora"; do
    for seed in ${CONTINUAL_SEEDS:-0 1}; do
      name=continual-${a%% *}-$seed
      load
      # shellcheck disable=SC2086 # $a is the adapter and its flags
      nice -n 19 "$K" train --model "$MINILM" --tasks commonsense_qa,openbookqa \
        --data "$M/commonsense-qa/train.jsonl" --data "$M/openbookqa/train.jsonl" \
        --eval-data "$M/commonsense-qa/heldout.jsonl" --eval-data "$M/openbookqa/heldout.jsonl" \
        --adapter $a "${common[@]}" --max-length 64 --steps "$STAGE_STEPS" --seed "$seed" \
        --out "$OUT/$name" >"$OUT/$name.txt" 2>&1
      tail -n 8 "$OUT/$name.txt"
    done
  done
}

phase_smol() { # the decoder: LoRA-8 and Kron-LoRA A 2×4, 3 seeds, the first SMOL_EVAL held-out items
  load
  nice -n 19 "$K" compare --model "$SMOL" --task piqa --data "$M/piqa/train.jsonl" \
    --eval-data "$M/piqa/heldout.jsonl" --eval-limit "$SMOL_EVAL" "${common[@]}" --loss choices \
    --steps "$SMOL_STEPS" --seeds 3 --no-matched --config lora:r8 --config kronlora:r8:2x4 \
    --out "$OUT/smol-piqa"
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

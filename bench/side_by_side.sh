#!/bin/sh
# side_by_side.sh — the DistilBERT-base multiple-choice training step in krongrad and in
# PyTorch + PEFT, in one run on this machine, and the ratios: krongrad Kron-LoRA against
# PyTorch LoRA in f32 and under bf16 autocast, and Kron-LoRA against LoRA in each library.
# Runs are interleaved (krongrad, torch, krongrad, ...) so a busy machine hurts both alike.
#
# Usage: bench/side_by_side.sh [--steps N] [--batch B --choices K --seq T] [--threads N]
#                              [--no-bf16]   (skip bf16 autocast: minutes per step on CPUs
#                                             without AVX512-BF16 / AMX)
# Environment: KRONGRAD (the binary; default build-release/krongrad, else build/krongrad),
#              PYTHON (a python with torch, transformers and peft; default
#              bench/.venv-torch/bin/python, made by bench/setup-torch.sh).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
steps=5 batch=2 choices=4 seq=128 threads=2 bf16=1
while [ $# -gt 0 ]; do
    case $1 in
    --steps) steps=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --choices) choices=$2; shift 2 ;;
    --seq) seq=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --no-bf16) bf16=0; shift ;;
    *) echo "side_by_side.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
kg=${KRONGRAD:-}
if [ -z "$kg" ]; then
    for b in build-release build; do
        [ -x "$root/$b/krongrad" ] && { kg=$root/$b/krongrad; break; }
    done
fi
py=${PYTHON:-$here/.venv-torch/bin/python}
[ -x "$kg" ] || { echo "side_by_side.sh: no krongrad binary (meson setup build-release --buildtype=release && ninja -C build-release; or set KRONGRAD)" >&2; exit 1; }
[ -x "$py" ] || { echo "side_by_side.sh: no $py (run bench/setup-torch.sh, or set PYTHON)" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
shape="--batch $batch --choices $choices --seq $seq --steps $steps"
export KG_THREADS=$threads OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads

run() { # name, command...: the JSON line of the run into $out/name
    name=$1; shift
    echo "== $name" >&2
    "$@" --json > "$out/$name.txt" 2> "$out/$name.err" || { cat "$out/$name.err" "$out/$name.txt" >&2; exit 1; }
    grep '^{' "$out/$name.txt" | tail -1 > "$out/$name.json"
    grep -v '^{' "$out/$name.txt" >&2
}
run kg_kronlora "$kg" bench train --backend cpu --adapter kronlora $shape
run pt_lora_f32 "$py" "$here/torch_step.py" --adapter lora --precision f32 --threads "$threads" $shape
run kg_lora "$kg" bench train --backend cpu --adapter lora $shape
[ $bf16 = 1 ] && run pt_lora_bf16 "$py" "$here/torch_step.py" --adapter lora --precision bf16 --threads "$threads" $shape
run kg_full "$kg" bench train --backend cpu --adapter full $shape
run pt_kronlora_f32 "$py" "$here/torch_step.py" --adapter kronlora --precision f32 --threads "$threads" $shape
run pt_full_f32 "$py" "$here/torch_step.py" --adapter full --precision f32 --threads "$threads" $shape

"$py" - "$out" <<'PY'
import json, os, sys
d = sys.argv[1]
r = {f[:-5]: json.load(open(os.path.join(d, f))) for f in os.listdir(d) if f.endswith(".json")}
s = lambda k: r[k]["step_s"] if k in r else float("nan")
print("\nDistilBERT-base multiple choice, %d tokens per step (median step time, s)" % r["kg_kronlora"]["tokens"])
print("  %-28s %8s %8s" % ("", "step s", "tok/s"))
for k, label in [("kg_kronlora", "krongrad Kron-LoRA f32"), ("kg_lora", "krongrad LoRA-8 f32"),
                 ("kg_full", "krongrad full f32"), ("pt_lora_f32", "PyTorch LoRA-8 f32"),
                 ("pt_lora_bf16", "PyTorch LoRA-8 bf16 autocast"),
                 ("pt_kronlora_f32", "PyTorch Kron-LoRA f32"), ("pt_full_f32", "PyTorch full f32")]:
    if k in r:
        print("  %-28s %8.3f %8.0f" % (label, s(k), r[k]["tokens_per_s"]))
print("\nratios (throughput; > 1: krongrad faster)        value  target")
rows = [("krongrad Kron-LoRA / PyTorch LoRA-8 f32", s("pt_lora_f32") / s("kg_kronlora"), ">= 1.5"),
        ("krongrad Kron-LoRA / PyTorch LoRA-8 bf16", s("pt_lora_bf16") / s("kg_kronlora"), ">= 1.5 (needs bf16 frozen weights)"),
        ("krongrad full / PyTorch full f32", s("pt_full_f32") / s("kg_full"), ""),
        ("step time krongrad Kron-LoRA / LoRA-8", s("kg_kronlora") / s("kg_lora"), "<= 1.02"),
        ("step time PyTorch Kron-LoRA / LoRA-8", s("pt_kronlora_f32") / s("pt_lora_f32"), "")]
for label, v, t in rows:
    print("  %-45s %6.2f  %s" % (label, v, t))
PY

#!/bin/sh
# side_by_side.sh — a training step in krongrad and in PyTorch + PEFT, in one run on this
# machine, and the ratios: krongrad Kron-LoRA and LoRA against PyTorch LoRA in f32 (and under bf16
# autocast, krongrad then with its frozen weights in bf16: --frozen bf16), and Kron-LoRA against
# LoRA in each library. --arch distilbert-base (default): the
# multiple-choice step, 2 x 4 x 128 tokens; --arch smollm2-135m: the decoder's next-token step,
# 8 rows x 128 tokens. Runs are interleaved (krongrad, torch, krongrad, ...) so a busy machine
# hurts both alike, and each prints the load average it started at.
#
# Usage: bench/side_by_side.sh [--arch NAME] [--steps N] [--batch B --choices K --seq T]
#                              [--threads N] [--adapters "kronlora lora full"]
#                              [--no-bf16]   (skip bf16 autocast: minutes per step on CPUs
#                                             without AVX512-BF16 / AMX)
# Environment: KRONGRAD (the binary; default build-release/krongrad, else build/krongrad),
#              PYTHON (a python with torch, transformers and peft; default
#              bench/.venv-torch/bin/python, made by bench/setup-torch.sh).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
arch=distilbert-base steps=5 batch= choices= seq=128 threads=2 bf16=1
adapters="kronlora lora full"
while [ $# -gt 0 ]; do
    case $1 in
    --arch) arch=$2; shift 2 ;;
    --adapters) adapters=$2; shift 2 ;;
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
case $arch in
distilbert-base) batch=${batch:-2} choices=${choices:-4} ;;
smollm2-135m) batch=${batch:-8} choices=${choices:-1} ;;
*) echo "side_by_side.sh: --arch takes distilbert-base or smollm2-135m" >&2; exit 2 ;;
esac
shape="--arch $arch --batch $batch --choices $choices --seq $seq --steps $steps"
export KG_THREADS=$threads OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads

run() { # name, command...: the JSON line of the run into $out/name
    name=$1; shift
    echo "== $name    $(uptime | sed 's/.*load/load/')" >&2
    "$@" --json > "$out/$name.txt" 2> "$out/$name.err" || { cat "$out/$name.err" "$out/$name.txt" >&2; exit 1; }
    grep '^{' "$out/$name.txt" | tail -1 > "$out/$name.json"
    grep -v '^{' "$out/$name.txt" >&2
}
pt() { "$py" "$here/torch_step.py" --threads "$threads" $shape "$@"; }
kg_run() { "$kg" bench train --backend cpu $shape "$@"; }
for ad in $adapters; do
    run kg_$ad kg_run --adapter $ad
    run pt_${ad}_f32 pt --adapter $ad --precision f32
    if [ $bf16 = 1 ] && [ $ad != full ]; then # bf16 frozen weights against bf16 autocast
        run kg_${ad}_bf16 kg_run --adapter $ad --frozen bf16
        if [ $ad = lora ]; then run pt_lora_bf16 pt --adapter lora --precision bf16; fi
    fi
done

"$py" - "$out" "$arch" <<'PY'
import json, os, sys
d, arch = sys.argv[1], sys.argv[2]
r = {f[:-5]: json.load(open(os.path.join(d, f))) for f in os.listdir(d) if f.endswith(".json")}
s = lambda k: r[k]["step_s"] if k in r else float("nan")
what = {"distilbert-base": "DistilBERT-base multiple choice",
        "smollm2-135m": "SmolLM2-135M next-token loss"}[arch]
print("\n%s, %d tokens per step (median step time, s)" % (what, next(iter(r.values()))["tokens"]))
print("  %-28s %8s %8s" % ("", "step s", "tok/s"))
for k, label in [("kg_kronlora", "krongrad Kron-LoRA f32"), ("kg_lora", "krongrad LoRA-8 f32"),
                 ("kg_kronlora_bf16", "krongrad Kron-LoRA, bf16 W"),
                 ("kg_lora_bf16", "krongrad LoRA-8, bf16 W"),
                 ("kg_full", "krongrad full f32"), ("pt_lora_f32", "PyTorch LoRA-8 f32"),
                 ("pt_lora_bf16", "PyTorch LoRA-8 bf16 autocast"),
                 ("pt_kronlora_f32", "PyTorch Kron-LoRA f32"), ("pt_full_f32", "PyTorch full f32")]:
    if k in r:
        print("  %-28s %8.3f %8.0f" % (label, s(k), r[k]["tokens_per_s"]))
print("\nratios (throughput; > 1: krongrad faster)        value  target")
rows = [("krongrad Kron-LoRA / PyTorch LoRA-8 f32", s("pt_lora_f32") / s("kg_kronlora"), ">= 2"),
        ("krongrad LoRA-8 / PyTorch LoRA-8 f32", s("pt_lora_f32") / s("kg_lora"), ">= 2" if arch != "distilbert-base" else ""),
        ("krongrad Kron-LoRA / PyTorch Kron-LoRA f32", s("pt_kronlora_f32") / s("kg_kronlora"), ">= 2" if arch != "distilbert-base" else ""),
        ("krongrad Kron-LoRA bf16 W / PyTorch LoRA-8 bf16", s("pt_lora_bf16") / s("kg_kronlora_bf16"), ">= 1.5"),
        ("krongrad LoRA-8 bf16 W / PyTorch LoRA-8 bf16", s("pt_lora_bf16") / s("kg_lora_bf16"), ">= 1.5"),
        ("krongrad full / PyTorch full f32", s("pt_full_f32") / s("kg_full"), ""),
        ("step time krongrad Kron-LoRA / LoRA-8", s("kg_kronlora") / s("kg_lora"), "<= 1.02"),
        ("step time PyTorch Kron-LoRA / LoRA-8", s("pt_kronlora_f32") / s("pt_lora_f32"), "")]
for label, v, t in rows:
    if v == v:  # runs not asked for (--adapters) give NaN: left out
        print("  %-45s %6.2f  %s" % (label, v, t))
PY

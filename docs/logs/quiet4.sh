#!/bin/sh
# This round (main after 2a4fd7d) against the last session's main (dc38254), on this session's
# machine: AMD EPYC Zen 3 (family 25 model 1), 2 cores, AVX2 + FMA, no AVX-512. Binary against
# binary interleaved (base, new, new, base), then both side-by-sides against PyTorch in f32
# (PyTorch's bf16 autocast without AVX512-BF16 takes minutes a step), the LM head's row passes
# on each exp path, the SFT step on real chat data, and the demo with each binary.
cd /work/main
export PYTHON=/work/venv/bin/python KRONGRAD=/work/main/build-rel/krongrad KG_THREADS=2
B=/tmp/kg-base/build-rel/krongrad N=/work/main/build-rel/krongrad
M=$HOME/.cache/krongrad/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
D=$HOME/.cache/krongrad/models/chatterbot-english/train.jsonl
idle() { echo "## $1 -- $(date +%T) $(uptime | sed 's/.*load/load/'); cpu idle over 2 s: $(vmstat 2 2 | tail -1 | awk '{print $15}')%"; }
git log --oneline -1
grep -m1 'model name' /proc/cpuinfo
for args in "--arch smollm2-135m --adapter lora --batch 8 --choices 1 --seq 128 --steps 3" \
            "--arch smollm2-135m --adapter kronlora --batch 8 --choices 1 --seq 128 --steps 3" \
            "--arch distilbert-base --adapter kronlora --steps 4"; do
  for k in base new new base; do
    [ $k = base ] && K=$B || K=$N
    idle "$k $args"
    $K bench train --backend cpu $args 2>&1 | grep -E "median|peak|linear_log_prob |contiguous|scale |kron_linear|lowrank"
  done
done
for k in base new new base; do
  [ $k = base ] && K=$B || K=$N
  idle "$k sft chatterbot"
  rm -rf /tmp/sftout
  /usr/bin/time -f "wall %e s, maxrss %M KB" $K train --model $M --task sft --data $D --out /tmp/sftout \
      --steps 6 --batch 16 --loss-on all --adapter lora --backend cpu 2>&1 | grep -E "peak|mean step|wall"
done
for p in scalar avx2; do
  idle "fused head, KG_EXP_PATH=$p"
  KG_EXP_PATH=$p build-rel/bench/bench_gemm --frozen-only --lm-head --rounds 2 | tail -3
done
idle "smollm2 side by side"
bench/side_by_side.sh --arch smollm2-135m --adapters "lora kronlora" --steps 3 --no-bf16
idle "distilbert side by side"
bench/side_by_side.sh --adapters "kronlora lora" --steps 3 --no-bf16
for k in base new; do
  [ $k = base ] && K=$B || K=$N
  idle "$k demo"
  /usr/bin/time -f "demo wall %e s" $K demo --backend cpu 2>&1 | tail -6
done
idle "end"

#!/bin/sh
# This round (main after d916ca6) against the last (eb1ba9f: main f58b9fd plus the full-fine-tune
# check, the same speed), on the quiet machine: bench train interleaved binary against binary,
# then both side-by-sides against PyTorch, the fused-head table and the demo.
cd /work/main
export PYTHON=/work/venv/bin/python KRONGRAD=/work/main/build-rel/krongrad KG_THREADS=2
B=/tmp/kg-base/build-rel/krongrad N=/work/main/build-rel/krongrad
idle() { echo "## $1 -- $(date +%T) $(uptime | sed 's/.*load/load/'); cpu idle over 2 s: $(vmstat 2 2 | tail -1 | awk '{print $15}')%"; }
git log --oneline -1
for args in "--arch smollm2-135m --adapter lora --batch 8 --choices 1 --seq 128 --steps 3" \
            "--arch smollm2-135m --adapter lora --batch 8 --choices 1 --seq 128 --steps 3 --frozen bf16" \
            "--arch distilbert-base --adapter kronlora --steps 4" \
            "--arch distilbert-base --adapter kronlora --steps 4 --frozen bf16"; do
  for k in base new new base; do
    [ $k = base ] && K=$B || K=$N
    idle "$k $args"
    $K bench train --backend cpu $args 2>&1 | grep -E "median|peak|linear_log_prob |dropout|gelu"
  done
done
idle "fused head"
build-rel/bench/bench_gemm --frozen-only --lm-head --rounds 3 | tail -5
idle "smollm2 side by side"
bench/side_by_side.sh --arch smollm2-135m --adapters "lora kronlora" --steps 3
idle "distilbert side by side"
bench/side_by_side.sh --adapters "kronlora lora" --steps 3
idle "demo"
/usr/bin/time -f "demo wall %e s" $KRONGRAD demo --backend cpu 2>&1 | tail -8
idle "end"

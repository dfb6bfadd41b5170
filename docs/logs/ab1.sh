#!/bin/sh
# base (main 2077d48) against this branch, interleaved, one step kind at a time
B=/tmp/kg-base/build-rel/krongrad N=/work/main/build-rel/krongrad
export KG_THREADS=2
for args in "--arch smollm2-135m --adapter lora --batch 8 --choices 1 --seq 128 --steps 2" \
            "--arch smollm2-135m --adapter lora --batch 8 --choices 1 --seq 128 --steps 2 --frozen bf16" \
            "--arch distilbert-base --adapter kronlora --steps 3" \
            "--arch distilbert-base --adapter kronlora --steps 3 --frozen bf16"; do
  for k in base new; do
    [ $k = base ] && K=$B || K=$N
    echo "== $k $args -- $(uptime | sed 's/.*load/load/'); idle $(vmstat 1 2 | tail -1 | awk '{print $15}')%"
    $K bench train --backend cpu $args 2>&1 | grep -E "median|peak|linear_log_prob |gelu|swiglu|softmax |matmul" 
  done
done

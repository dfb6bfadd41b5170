#!/bin/sh
B=/tmp/kg-base/build-rel/krongrad N=/work/main/build-rel/krongrad
export KG_THREADS=2
for args in "--arch smollm2-135m --adapter lora --batch 8 --choices 1 --seq 128 --steps 3 --frozen bf16" \
            "--arch distilbert-base --adapter kronlora --steps 4 --frozen bf16"; do
  for k in new base new base; do
    [ $k = base ] && K=$B || K=$N
    echo "== $k $args -- $(uptime | sed 's/.*load/load/'); idle $(vmstat 1 2 | tail -1 | awk '{print $15}')%"
    $K bench train --backend cpu $args 2>&1 | grep -E "median|profiled"
  done
done

#!/bin/sh
# This round (main after 1d307a4: prompts shared by their choices) against the last session's
# main (1d307a4), on this session's machine: AMD EPYC Zen 4 (family 25 model 17), 2 cores,
# AVX-512 with AVX512-BF16. The demo and multiple-choice evaluation with each binary (base, new,
# new, base for the demo), then both side-by-sides against PyTorch, f32 and bf16.
cd /work/main
export PYTHON=/work/venv/bin/python KRONGRAD=/work/main/build-rel/krongrad KG_THREADS=2
B=/tmp/kg-base/build-rel/krongrad N=/work/main/build-rel/krongrad
MD=$HOME/.cache/krongrad/models
M=$MD/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
idle() { echo "## $1 -- $(date +%T) $(uptime | sed 's/.*load/load/'); cpu idle over 2 s: $(vmstat 2 2 | tail -1 | awk '{print $15}')%"; }
git log --oneline -1
grep -m1 'model name' /proc/cpuinfo
for k in base new new base; do
  [ $k = base ] && K=$B || K=$N
  idle "$k demo"
  /usr/bin/time -f "demo wall %e s, maxrss %M KB" $K demo --backend cpu 2>&1 | tail -6
done
for t in "piqa piqa/validation.jsonl" "openbookqa openbookqa/test.jsonl" \
         "social_iqa siqa/validation.jsonl" "commonsense_qa commonsense-qa/validation.jsonl"; do
  set -- $t
  for k in base new; do
    [ $k = base ] && K=$B || K=$N
    idle "$k eval $1 (100 items, Q4_1 kept packed)"
    $K eval --model $M --task $1 --data $MD/$2 --limit 100 --backend cpu --frozen q4_1 2>&1 | tail -3
  done
done
idle "smollm2 side by side"
bench/side_by_side.sh --arch smollm2-135m --adapters "lora kronlora" --steps 3
idle "distilbert side by side"
bench/side_by_side.sh --adapters "kronlora lora" --steps 3
idle "end"

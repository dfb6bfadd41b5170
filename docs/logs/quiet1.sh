#!/bin/sh
# The issue-16 quiet run: every target measurement, one after another, nothing else running.
# Each part prints the load average and the CPU idle share before it starts.
cd /work/main
export PYTHON=/work/venv/bin/python KRONGRAD=/work/main/build-rel/krongrad LLAMA_CPP_DIR=/tmp/llama.cpp
M=$HOME/.cache/krongrad/models
S=$M/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
idle() { echo "## $1 -- $(date +%T) $(uptime | sed 's/.*load/load/'); cpu idle over 2 s: $(vmstat 2 2 | tail -1 | awk '{print $15}')%"; }
git log --oneline -1
idle "smollm2 side by side"
bench/side_by_side.sh --arch smollm2-135m --adapters "lora kronlora" --steps 3
idle "distilbert side by side"
bench/side_by_side.sh --adapters "kronlora lora" --steps 3
idle "bench_gemm frozen"
build-rel/bench/bench_gemm --frozen-only --rounds 3
idle "eval vs llama-bench"
for f in q4_1 f32; do
  /usr/bin/time -f "eval --frozen $f wall %e s, maxrss %M KiB" $KRONGRAD eval --model $S --task piqa --data $M/piqa/validation.jsonl --limit 100 --backend cpu --frozen $f 2>&1 | tail -4
done
/tmp/llama.cpp/build/bin/llama-bench -m $S -p 128,512 -n 0 -t 2
idle "7b step"
build-rel/bench/bench_7b --layers 32 --steps 2
idle "demo"
/usr/bin/time -f "demo wall %e s" $KRONGRAD demo --backend cpu 2>&1 | tail -25
idle "end"

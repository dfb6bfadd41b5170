#!/bin/sh
# gpu-check.sh — everything to measure on the day a GPU is lent, in one run under 8 minutes: the
# device (krongrad info), the Vulkan test suite, bench_ops (per-op Vulkan vs CPU) and
# `krongrad bench train --backend vulkan` for the DistilBERT-base and SmolLM2-135M steps, then
# one table of the step figures (Markdown, also written to $GPU_CHECK_OUT, default
# gpu-check.md). Each part has its own time limit so one hang cannot eat the others': build
# 120 s, info 20, tests 150, bench_ops 40, five steps 30 each: 480 s at most.
#
# Usage: scripts/gpu-check.sh [build dir, default build-release]   (made here if missing)
set -u
cd "$(dirname "$0")/.."
bd=${1:-build-release}
out=${GPU_CHECK_OUT:-gpu-check.md}
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT
start=$(date +%s)
say() { printf '\n== %s (%ds)\n' "$1" $(( $(date +%s) - start )); }

if [ ! -x "$bd/krongrad" ] || [ ! -x "$bd/bench/bench_ops" ]; then
    say "build ($bd, release)"
    [ -d "$bd" ] || meson setup "$bd" --buildtype=release >/dev/null || exit 1
    timeout 120 ninja -C "$bd" >/dev/null || { echo "gpu-check: the build failed" >&2; exit 1; }
fi
kg=$bd/krongrad

say "device"
uptime
timeout 20 "$kg" info || echo "gpu-check: krongrad info failed"

say "meson test --suite vulkan"
timeout 150 meson test -C "$bd" --suite vulkan --print-errorlogs 2>&1 | tail -15
tests=$(grep -c '^ *[0-9]*/[0-9]* .* OK ' "$bd/meson-logs/testlog.txt" 2>/dev/null || echo 0)

say "bench_ops"
timeout 40 "$bd/bench/bench_ops" 3 || echo "gpu-check: bench_ops failed or timed out"

# name, arguments: one `bench train` run's JSON line into $log/name.json (its output shown)
train() {
    name=$1; shift
    say "bench train $name"
    timeout 30 "$kg" bench train "$@" --steps 2 --warmup 1 --json > "$log/$name.txt" 2>&1
    grep -v '^{' "$log/$name.txt" | head -30
    grep '^{' "$log/$name.txt" | tail -1 > "$log/$name.json"
}
train distilbert-kronlora-vulkan --backend vulkan --arch distilbert-base --adapter kronlora
train distilbert-lora-vulkan --backend vulkan --arch distilbert-base --adapter lora
train smollm2-lora-vulkan --backend vulkan --arch smollm2-135m --adapter lora --batch 8 --choices 1
train smollm2-kronlora-vulkan --backend vulkan --arch smollm2-135m --adapter kronlora --batch 8 --choices 1
train distilbert-kronlora-cpu --backend cpu --arch distilbert-base --adapter kronlora

{
    echo "| run | tokens | step s | tokens/s | tensor peak MiB |"
    echo "|---|---:|---:|---:|---:|"
    for f in "$log"/*.json; do
        n=$(basename "$f" .json)
        if [ -s "$f" ]; then
            sed -e 's/.*"tokens": \([0-9]*\).*"step_s": \([0-9.]*\).*"tokens_per_s": \([0-9.]*\).*"tensor_peak_mib": \([0-9.]*\).*/\1 \2 \3 \4/' "$f" |
                { read -r tok st tps mib; echo "| $n | $tok | $st | $tps | $mib |"; }
        else
            echo "| $n | failed or timed out | | | |"
        fi
    done
    echo
    echo "vulkan suite: $tests tests OK; $(uptime | sed 's/.*load/load/'); $(( $(date +%s) - start )) s in all"
} > "$out"
say "table ($out)"
cat "$out"

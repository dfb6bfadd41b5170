#!/bin/sh
# generate_side_by_side.sh — batch-1 generation in krongrad and in llama.cpp on the same GGUF and
# thread count, in one run, and the ratio. Runs alternate (krongrad, llama.cpp, krongrad, ...) so
# a busy machine hurts both alike; each prints the load average it started at, and the ratio is
# of the medians. Without LLAMA_CPP_DIR only krongrad's figures are printed.
#
# Usage: bench/generate_side_by_side.sh MODEL.gguf [--frozen DTYPE] [--new N] [--rounds R]
#                                      [--threads N]
# Environment: KRONGRAD (default build-release/ or build-rel/krongrad, else build/); LLAMA_CPP_DIR, a
#              llama.cpp build whose llama-bench is at $LLAMA_CPP_DIR/build/bin/llama-bench or
#              $LLAMA_CPP_DIR/bin/llama-bench (docs/performance.md says how to build one).
set -eu
[ $# -ge 1 ] || { echo "usage: $0 MODEL.gguf [--frozen DTYPE] [--new N] [--rounds R] [--threads N]" >&2; exit 2; }
model=$1; shift
frozen=q4_1 new=64 rounds=3 threads=2
while [ $# -gt 0 ]; do
    case $1 in
    --frozen) frozen=$2; shift 2 ;;
    --new) new=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    *) echo "$0: unknown option $1" >&2; exit 2 ;;
    esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
kg=${KRONGRAD:-}
[ -n "$kg" ] || for b in "$root/build-release/krongrad" "$root/build-rel/krongrad" "$root/build/krongrad"; do
    [ -x "$b" ] && { kg=$b; break; }
done
[ -x "$kg" ] || { echo "$0: no krongrad binary (set KRONGRAD)" >&2; exit 1; }
lb=
if [ -n "${LLAMA_CPP_DIR:-}" ]; then
    for b in "$LLAMA_CPP_DIR/build/bin/llama-bench" "$LLAMA_CPP_DIR/bin/llama-bench"; do
        [ -x "$b" ] && { lb=$b; break; }
    done
    [ -n "$lb" ] || { echo "$0: no llama-bench under LLAMA_CPP_DIR=$LLAMA_CPP_DIR" >&2; exit 1; }
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
i=1
while [ "$i" -le "$rounds" ]; do
    echo "== round $i: krongrad    $(uptime | sed 's/.*load/load/')"
    KG_THREADS=$threads "$kg" bench generate --model "$model" --frozen "$frozen" --new "$new" \
        --json | tee "$tmp/kg.out" | grep -v '^{'
    sed -n 's/.*"tokens_per_s": \([0-9.]*\).*/\1/p' "$tmp/kg.out" >> "$tmp/kg"
    if [ -n "$lb" ]; then
        echo "== round $i: llama.cpp   $(uptime | sed 's/.*load/load/')"
        "$lb" -m "$model" -n "$new" -p 0 -t "$threads" -o csv > "$tmp/lb.out" 2>/dev/null
        # llama-bench's CSV: the column avg_ts holds tokens/s
        awk -F, 'NR == 1 { for (c = 1; c <= NF; c++) if ($c ~ /avg_ts/) col = c; next }
                 col { gsub(/"/, "", $col); print $col }' "$tmp/lb.out" | tee -a "$tmp/lb"
    fi
    i=$((i + 1))
done
echo "== done          $(uptime | sed 's/.*load/load/')"

median() { sort -n "$1" | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
k=$(median "$tmp/kg")
printf '\ngeneration, %s tokens, %s threads (median tok/s over %s rounds)\n' "$new" "$threads" "$rounds"
printf '  %-28s %8.1f\n' "krongrad (--frozen $frozen)" "$k"
if [ -n "$lb" ]; then
    l=$(median "$tmp/lb")
    printf '  %-28s %8.1f\n' "llama.cpp llama-bench tg$new" "$l"
    awk -v k="$k" -v l="$l" 'BEGIN { printf "  %-28s %8.2f  (target >= 1.0)\n", "ratio krongrad / llama.cpp", k / l }'
fi

#!/bin/sh
cd /work/main
export PYTHON=/work/venv/bin/python KRONGRAD=/work/main/build-rel/krongrad
idle() { echo "## $1 -- $(date +%T) $(uptime | sed 's/.*load/load/'); cpu idle over 2 s: $(vmstat 2 2 | tail -1 | awk '{print $15}')%"; }
git log --oneline -1
idle "smollm2 side by side"
bench/side_by_side.sh --arch smollm2-135m --adapters "lora kronlora" --steps 3
idle "distilbert side by side"
bench/side_by_side.sh --adapters "kronlora lora" --steps 3
idle "demo"
/usr/bin/time -f "demo wall %e s" $KRONGRAD demo --backend cpu 2>&1 | tail -8
idle "end"

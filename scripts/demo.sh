#!/usr/bin/env bash
# demo.sh — the newcomer's first command: install what is needed, build, run the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
[ -d build ] || meson setup build
meson compile -C build
./build/krongrad info

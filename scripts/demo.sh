#!/usr/bin/env bash
# demo.sh — the newcomer's first command: install what is needed, build, fetch the real models
# (SmolLM2-135M-Instruct among them; checksums pinned) and run `krongrad demo`, which fine-tunes
# SmolLM2 with Kron-LoRA and with LoRA-8 on a generated task and prints accuracy before and after.
# Options are passed to `krongrad demo` (e.g. --backend vulkan; see krongrad demo --help).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
[ -d build ] || meson setup build
meson compile -C build
./scripts/fetch-models.sh
./build/krongrad demo "$@"

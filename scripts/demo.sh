#!/usr/bin/env bash
# demo.sh — the newcomer's first command: install what is needed, build, fetch the real models
# (SmolLM2-135M-Instruct among them; checksums pinned) and run `krongrad demo`, which fine-tunes
# SmolLM2 with Kron-LoRA and with LoRA-8 on a generated task, with the same budget, and prints both
# loss curves and held-out accuracy before and after. Only the krongrad executable is built (the
# tests build with `meson compile -C build`). Options are passed to `krongrad demo` (e.g.
# --steps 30 --layers 0; see krongrad demo --help).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
[ -d build ] || meson setup build
meson compile -C build krongrad:executable
./scripts/fetch-models.sh
./build/krongrad demo "$@"

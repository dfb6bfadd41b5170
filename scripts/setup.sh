#!/usr/bin/env bash
# setup.sh — install every Debian 12 package krongrad needs to build, test and run.
# Idempotent: installs only what is missing, running `apt-get update` once if it must install.
# Needs root (runs itself through sudo when it can).
set -euo pipefail

packages=(
  gcc g++ libc6-dev pkg-config meson ninja-build   # toolchain and build
  libjansson-dev libsentencepiece-dev libutf8proc-dev   # JSON, tokenizer.model, Unicode
  clang libclang-rt-14-dev                         # libFuzzer targets (tests/fuzz)
  libcmocka-dev                                    # tests
  libopenblas0-pthread                             # optional BLAS, loaded at run time
  libvulkan-dev mesa-vulkan-drivers glslc          # Vulkan loader, lavapipe, shader compiler
  vulkan-validationlayers vulkan-tools             # validation in tests; vulkaninfo
  libopenmpi-dev openmpi-bin iproute2              # MPI data parallelism; its tests' netns
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

as_root=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: run as root to install: ${missing[*]}" >&2; exit 1; }
  as_root=(sudo)
fi
echo "setup: installing ${missing[*]}"
"${as_root[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends \
  "${missing[@]}"

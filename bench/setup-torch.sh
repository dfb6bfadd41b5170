#!/bin/sh
# setup-torch.sh — a Python venv with PyTorch (the CPU wheel), transformers and peft from PyPI,
# for bench/torch_step.py. Usage: bench/setup-torch.sh [DIR]   (default: bench/.venv-torch)
# Afterwards: DIR/bin/python bench/torch_step.py --help
set -eu
dir=${1:-$(dirname "$0")/.venv-torch}
python3 -m venv "$dir"
"$dir/bin/pip" install --upgrade pip
# The CPU wheel: PyPI's default torch on Linux carries CUDA libraries a CPU benchmark never uses.
# Where only PyPI is reachable, PyPI's wheel (with its CUDA libraries, a few GB) does the same job.
"$dir/bin/pip" install torch --index-url https://download.pytorch.org/whl/cpu --retries 1 --timeout 15 ||
  "$dir/bin/pip" install torch
"$dir/bin/pip" install transformers peft
"$dir/bin/python" -c 'import torch, transformers, peft; print("torch", torch.__version__,
"transformers", transformers.__version__, "peft", peft.__version__)'

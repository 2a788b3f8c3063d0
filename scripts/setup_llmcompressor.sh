#!/usr/bin/env bash
# A second venv for the llm-compressor peer benchmark (python -m sparsecore.bench llmcompressor):
# llm-compressor 0.14 pins transformers<=5.17 and compressed-tensors==0.19, so it cannot share
# the project's environment. Same torch as the project. The project's own install is untouched.
# Usage: bash scripts/setup_llmcompressor.sh [VENV_DIR]   (default build/llmcompressor-venv)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-build/llmcompressor-venv}
PY=${PYTHON:-python3}
[ -x "$venv/bin/python" ] || $PY -m venv "$venv"
"$venv/bin/python" -m pip install --quiet "torch==2.13.0" "llmcompressor==0.14.0.1"
"$venv/bin/python" -c "import llmcompressor, transformers, compressed_tensors; print('llmcompressor', llmcompressor.__version__, 'transformers', transformers.__version__, 'compressed-tensors', compressed_tensors.__version__)"
echo "$venv"

#!/usr/bin/env bash
# The main job: set up, build, then the end-to-end demo on the real SmolLM2 and real
# Wikipedia text: prune with magnitude, Wanda and SparseGPT at 50% unstructured and 2:4,
# compare perplexity, size on disk and decode tokens/s with the dense model, time decode
# on Llama-7B-shaped layers, and write bench/results/demo/{report.md,results.json,tradeoff.png}.
# Extra flags go to `sparsecore demo` (e.g. --quick, --patterns 50%,4:8,2:4, --calib-seqs 128).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python3 -m sparsecore demo --out-dir bench/results/demo "$@"

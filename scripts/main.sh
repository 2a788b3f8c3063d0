#!/usr/bin/env bash
# The main job: set up, build, and run the SpMM benchmark (sparsecore vs dense
# torch, numpy, torch.sparse and scipy in one run). Pass --quick for a short run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p bench/results
python3 -m sparsecore.bench spmm --json bench/results/spmm.json "$@"

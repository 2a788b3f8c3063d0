#!/usr/bin/env bash
# The whole GPU check, for a machine with an NVIDIA GPU (sm_80 or newer) whose Python
# already has torch, nvcc (>= 12.5), cmake, ninja, pybind11, scikit-build-core and pytest
# (nothing is installed): build for the local GPU's architecture only against that torch,
# then run the CUDA ctests, every GPU pytest test, `python -m sparsecore.selftest` and the
# GPU benchmark (`python -m sparsecore.bench gpu`). Everything is written to $OUT (default: gpu-check/) and summarised at the
# end; exits non-zero if any step failed. Every GPU kernel family adds itself here.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-check}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
status=0
step() {  # step NAME COMMAND...: run, log to $OUT/NAME.log, remember failures
  local name=$1; shift
  echo "== $name"
  if "$@" > "$OUT/$name.log" 2>&1; then echo "   ok"; else echo "   FAILED (see $OUT/$name.log)"; status=1; fi
  tail -n 40 "$OUT/$name.log"
}
arch=$($PY -c "import torch; p = torch.cuda.get_device_properties(0); print(f'{p.major}{p.minor}')") || {
  echo "no CUDA GPU visible to torch"; exit 1; }
[ "$arch" = 90 ] && arch=90a  # Hopper: the sm_90a instructions
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
step build $PY -m pip install --no-build-isolation --no-deps -v \
  -Ccmake.define.SPARSECORE_CUDA=ON -Ccmake.define.CMAKE_CUDA_ARCHITECTURES="${arch}-real" \
  -Ccmake.define.SPARSECORE_BUILD_TESTS=ON -Cbuild-dir=build/gpu-check .
step ctest-cuda ctest --test-dir build/gpu-check --output-on-failure -L cuda
step pytest-gpu bash -c "cd tests && $PY -m pytest -q -p no:cacheprovider -rs test_cuda.py test_nm.py test_activation.py test_attention_cuda.py -k 'cuda or gpu'"
step selftest $PY -m sparsecore.selftest
step bench-gpu $PY -m sparsecore.bench gpu --json "$OUT/bench-gpu.json"
echo "== summary (logs in $OUT)"
grep -hE "passed|failed|PASS|FAIL|tests passed" "$OUT"/*.log | tail -n 30
exit $status

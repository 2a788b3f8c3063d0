#!/usr/bin/env bash
# The C++ tests (ctest, no Python) built with AddressSanitizer and
# UndefinedBehaviorSanitizer: any out-of-bounds access, use after free, leak,
# signed overflow, bad shift or misaligned access fails the run. CPU paths
# only (scalar, AVX2, AVX-512 native where the CPU has it, AVX-512 under SIMDe).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
simde=$($PY -c "import simde_py; print(simde_py.get_include())")
flags="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g1"
# -O1: the sanitizers with -O3 take far longer to compile the per-ISA kernel units.
cmake -S . -B build/sanitize -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSPARSECORE_KERNEL_OPT=-O1 \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DSPARSECORE_BUILD_TESTS=ON -DSPARSECORE_BUILD_PYTHON=OFF -DSPARSECORE_CUDA=OFF -DSPARSECORE_SIMDE=ON \
  -DSPARSECORE_SIMDE_INCLUDE_DIR="$simde" > build/sanitize.log
cmake --build build/sanitize -j2 >> build/sanitize.log
echo "== ctest under ASan + UBSan (build/sanitize)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 SPARSECORE_TEST_SMALL=1 \
  ctest --test-dir build/sanitize --output-on-failure -j2

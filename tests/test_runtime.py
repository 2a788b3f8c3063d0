import subprocess
import sys

import pytest

import sparsecore
from conftest import REQUIRED_ISAS


def test_info_fields():
    d = sparsecore.info()
    for key in ("version", "cpu_isa_compiled", "cpu_isa_available", "cpu_isa_selected", "cpu_threads",
                "cuda_compiled", "cuda_archs", "cuda_devices"):
        assert key in d
    assert "scalar" in d["cpu_isa_available"]
    assert d["cpu_isa_selected"] in d["cpu_isa_available"]
    if d["cuda_compiled"]:
        assert "80" in d["cuda_archs"] and "90a" in d["cuda_archs"]


def test_required_isa_paths_are_runnable():
    """The test script names the paths this machine must exercise, so none is skipped silently."""
    missing = [isa for isa in REQUIRED_ISAS if isa not in sparsecore.available_cpu_isas()]
    assert not missing, f"ISA paths not runnable in this build: {missing}"


def test_set_cpu_isa_rejects_unknown_and_unavailable():
    with pytest.raises(ValueError, match="unknown CPU ISA"):
        sparsecore.set_cpu_isa("sse9")
    unavailable = [i for i in ("avx512", "avx2", "avx512-simde") if i not in sparsecore.available_cpu_isas()]
    for name in unavailable:
        with pytest.raises(ValueError, match="not compiled|not supported"):
            sparsecore.set_cpu_isa(name)


def test_use_cpu_isa_restores():
    before = sparsecore.cpu_isa()
    with sparsecore.use_cpu_isa("scalar"):
        assert sparsecore.cpu_isa() == "scalar"
    assert sparsecore.cpu_isa() == before


def test_env_override_and_bad_value():
    code = "import sparsecore; print(sparsecore.cpu_isa())"
    out = subprocess.run([sys.executable, "-c", code], env={"SPARSECORE_CPU_ISA": "scalar", "PATH": ""},
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "scalar"
    out = subprocess.run([sys.executable, "-W", "always", "-c", code], env={"SPARSECORE_CPU_ISA": "bogus", "PATH": ""},
                         capture_output=True, text=True, check=True)
    assert "ignored" in out.stderr and out.stdout.strip() in sparsecore.available_cpu_isas()


def test_threads_setting():
    n = sparsecore.get_num_threads()
    sparsecore.set_num_threads(1)
    assert sparsecore.get_num_threads() == 1
    sparsecore.set_num_threads(0)
    assert sparsecore.get_num_threads() == n


def test_cli_info_and_selftest():
    out = subprocess.run([sys.executable, "-m", "sparsecore", "info"], capture_output=True, text=True, check=True)
    assert "CPU ISA paths compiled" in out.stdout
    out = subprocess.run([sys.executable, "-m", "sparsecore.selftest"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "selftest PASSED" in out.stdout and "FAIL " not in out.stdout

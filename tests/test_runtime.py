import os
import subprocess
import sys

import pytest
import torch

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


def test_spin_setting_and_env():
    before = sparsecore.get_spin_us()
    try:
        sparsecore.set_spin_us(1234)
        assert sparsecore.get_spin_us() == 1234
        sparsecore.set_spin_us(-1)
        assert sparsecore.get_spin_us() == 200
    finally:
        sparsecore.set_spin_us(before)
    code = "import sparsecore; print(sparsecore.get_spin_us())"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "SPARSECORE_SPIN_US": "5000"},
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "5000"


def test_thread_backend_setting_env_and_info():
    assert sparsecore.get_thread_backend() == "openmp"  # torch's OpenMP runtime is loaded
    assert sparsecore.info()["cpu_thread_backend"] == "openmp"
    try:
        sparsecore.set_thread_backend("own")
        assert sparsecore.get_thread_backend() == "own" and sparsecore.info()["cpu_thread_backend"] == "own"
        with pytest.raises(ValueError, match="thread backend"):
            sparsecore.set_thread_backend("tbb")
        assert sparsecore.get_thread_backend() == "own"  # a bad value changes nothing
    finally:
        sparsecore.set_thread_backend("auto")
    code = "import sparsecore; print(sparsecore.get_thread_backend())"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "SPARSECORE_THREAD_BACKEND": "own"},
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "own"


def test_omp_wait_policy_left_alone_unless_own_pool():
    """Importing sparsecore before torch must not make torch's OpenMP threads wait passively
    on the default backend (every parallel region, ours included, would pay a wake-up); with
    the own pool it defaults to PASSIVE, and a value the user set always wins."""
    code = "import os, sparsecore; print(os.environ.get('OMP_WAIT_POLICY', '-'))"
    base = {k: v for k, v in os.environ.items()
            if k not in ("OMP_WAIT_POLICY", "SPARSECORE_THREAD_BACKEND", "SPARSECORE_KEEP_OMP_POLICY")}

    def policy(**env):
        return subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True,
                              check=True).stdout.strip()

    assert policy() == "-"
    assert policy(SPARSECORE_THREAD_BACKEND="own") == "PASSIVE"
    assert policy(SPARSECORE_THREAD_BACKEND="own", SPARSECORE_KEEP_OMP_POLICY="1") == "-"
    assert policy(SPARSECORE_THREAD_BACKEND="own", OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"


class HoldProbe(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = sparsecore.nn.SparseLinear.from_linear(torch.nn.Linear(32, 8), torch.rand(8, 32) > 0.5)
        self.seen = []

    def forward(self, x, fail=False):
        self.seen.append(sparsecore._native._C.thread_holds())
        if fail:
            raise RuntimeError("boom")
        return self.lin(x)


def test_threads_held_during_forward_and_released_on_error():
    import copy
    import io

    from sparsecore._native import _C

    model = HoldProbe()
    start = _C.thread_holds()
    assert start == 0  # no forward in flight
    assert sparsecore.hold_threads_during_forward(model) is True
    assert sparsecore.hold_threads_during_forward(model) is False  # idempotent
    x = torch.randn(3, 32)
    want = model.lin(x)
    torch.testing.assert_close(model(x), want)
    assert model.seen == [start + 1] and _C.thread_holds() == start
    with pytest.raises(RuntimeError, match="boom"):
        model(x, fail=True)
    assert _C.thread_holds() == start  # released although the forward raised
    with sparsecore.runtime.threads_held():
        assert _C.thread_holds() == 1
    _C.hold_threads(False)  # an unmatched release never goes below zero
    assert _C.thread_holds() == 0
    # The hooks are plain functions: the model still deep-copies and pickles whole.
    clone = copy.deepcopy(model)
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    for m in (clone, loaded):
        torch.testing.assert_close(m(x), want)
        assert _C.thread_holds() == start

"""The CPU thread pool under concurrent, forked and failing use."""

import multiprocessing as mp
import threading

import pytest
import torch

import sparsecore
from sparsecore import CSR, NM
from sparsecore.activation import act_sparse_linear, pack_weight
from conftest import random_dense, random_sparse


@pytest.fixture(params=["auto", "own"], autouse=True)
def backend(request):
    """Every test on both pools: torch's OpenMP runtime ("auto" here, as torch is loaded)
    and sparsecore's own."""
    sparsecore.set_thread_backend(request.param)
    assert sparsecore.get_thread_backend() == ("own" if request.param == "own" else "openmp")
    yield request.param
    sparsecore.set_thread_backend("auto")


def _big_case():
    gen = torch.Generator().manual_seed(7)
    w = random_sparse(512, 768, 0.3, gen)
    x = random_dense((16, 768), gen)
    return w, x


def test_eight_python_threads_at_once_are_correct():
    """Every family from 8 threads at once (the pool takes one call, the others run
    inline): all results equal the float64 reference."""
    w, x = _big_case()
    nm_w = w * sparsecore.formats.nm.select_nm_mask(torch.rand(w.shape, generator=torch.Generator().manual_seed(1)),
                                                    2, 4)
    csr, nm, packed = CSR.from_dense(w), NM.from_dense(nm_w), pack_weight(w)
    want = {"csr": (x.double() @ w.double().T).float(), "nm": (x.double() @ nm_w.double().T).float(),
            "act": (x.double() @ w.double().T).float()}
    errors = []

    def worker(i):
        for _ in range(6):
            got = {"csr": sparsecore.sparse_linear(x, csr), "nm": sparsecore.sparse_linear(x, nm),
                   "act": act_sparse_linear(x, packed, 512, -float("inf"))}
            for k, v in got.items():
                if not torch.allclose(v, want[k], rtol=1e-5, atol=1e-4):
                    errors.append((i, k))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def _child(q, a, x, want):
    # Only sparsecore's kernel and small elementwise torch ops here: torch's own OpenMP
    # pool is not fork-safe (a large torch matmul in a forked child hangs, sparsecore or not).
    got = sparsecore.sparse_linear(x, a)
    q.put(bool(torch.allclose(got, want, rtol=1e-5, atol=1e-4)))


def _run_forked_child(a, x, want) -> None:
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(q, a, x, want))
    p.start()
    p.join(timeout=60)
    if p.is_alive():
        p.kill()
        pytest.fail("the forked child hung in the kernel")
    assert p.exitcode == 0 and q.get(timeout=5) is True


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs the fork start method")
def test_kernel_runs_in_a_forked_child():
    """The parent's pool has running workers when it forks; the child gets a fresh pool
    (it used to wait forever for workers that do not exist there)."""
    w, x = _big_case()
    a = CSR.from_dense(w)
    want = (x.double() @ w.double().T).float()
    sparsecore.sparse_linear(x, a)  # start the parent's workers
    _run_forked_child(a, x, want)


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs the fork start method")
def test_fork_while_another_thread_runs_kernels():
    """Forking while another thread keeps the pool busy: the child inherits locks held by
    threads that do not exist in it. Every child must still finish its kernel call."""
    w, x = _big_case()
    a = CSR.from_dense(w)
    want = (x.double() @ w.double().T).float()
    stop = threading.Event()

    def busy():
        while not stop.is_set():
            sparsecore.sparse_linear(x, a)

    t = threading.Thread(target=busy)
    t.start()
    try:
        for _ in range(12):
            _run_forked_child(a, x, want)
    finally:
        stop.set()
        t.join()

"""The one NaN/Inf rule of every sparsecore matmul, on every family, dtype and ISA path:
a row of x (column of B) holding NaN or Inf gives a NaN row of the result, the other rows
are computed as usual; a NaN bias entry makes its output NaN. The CUDA kernels apply the
same rule (tests/test_cuda.py, and the selftest on a GPU)."""

import pytest
import torch

import sparsecore
from sparsecore import BSR, CSR, NM
from sparsecore.activation import ActSparseLinear, act_sparse_linear, pack_weight, pack_weight_sparse
from conftest import random_dense, random_sparse

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
BAD = [float("nan"), float("inf"), -float("inf")]


def formats(gen):
    w = random_sparse(16, 32, 0.5, gen)
    nm = w * sparsecore.formats.nm.select_nm_mask(torch.rand(16, 32, generator=gen), 2, 4)
    yield "csr", CSR.from_dense(w, bitmap=False), w
    yield "csr+bitmap", CSR.from_dense(w, bitmap=True), w
    yield "bsr", BSR.from_dense(w, (4, 4)), w
    yield "nm", NM.from_dense(nm, 2, 4), nm


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("n", [1, 3, 20])
@pytest.mark.parametrize("dtype", DTYPES)
def test_nonfinite_row_of_x_poisons_its_output_row(isa, bad, n, dtype, gen):
    for name, a, w in formats(gen):
        x = random_dense((n, 32), gen).to(dtype)
        x[n // 2, 5] = bad
        y = sparsecore.sparse_linear(x, a)
        assert torch.isnan(y[n // 2]).all(), name
        clean = torch.ones(n, dtype=torch.bool)
        clean[n // 2] = False
        want = (x[clean].double() @ w.double().T).to(dtype)
        torch.testing.assert_close(y[clean], want, rtol=0, atol=0, msg=name)
        # spmm form: the poisoned column of B gives a NaN column of C.
        c = sparsecore.spmm(a, x.T)
        assert torch.isnan(c[:, n // 2]).all(), name


@pytest.mark.parametrize("bad", BAD)
def test_nonfinite_bias_propagates(isa, bad, gen):
    for name, a, w in formats(gen):
        bias = torch.zeros(16)
        bias[3] = bad
        y = sparsecore.sparse_linear(torch.ones(2, 32), a, bias)
        assert not torch.isfinite(y[:, 3]).any(), name
        assert torch.isfinite(y[:, [0, 1, 2, 4]]).all(), name


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("weight_sparse", [False, True])
def test_activation_kernel_follows_the_rule(isa, bad, weight_sparse, gen):
    w = random_sparse(40, 24, 0.5, gen)
    x = random_dense((3, 24), gen)
    x[1, 7] = bad
    if weight_sparse:
        values, bitmap, offsets = pack_weight_sparse(w)
        y = act_sparse_linear(x, values, 40, 0.5, sparse_runs=(bitmap, offsets), in_features=24)
    else:
        y = act_sparse_linear(x, pack_weight(w), 40, 0.5)
    assert torch.isnan(y[1]).all()
    assert torch.isfinite(y[[0, 2]]).all()


@pytest.mark.parametrize("rows", [2, 80])  # 80: the fp32 layer takes torch's GEMM path
def test_act_module_follows_the_rule(rows):
    bad = float("inf")
    lin = torch.nn.Linear(24, 16)
    act = ActSparseLinear.from_linear(lin, 0.3)
    x = torch.randn(rows, 24)
    x[1, 4] = bad
    y = act(x)
    assert torch.isnan(y[1]).all()
    assert torch.isfinite(y[0]).all()

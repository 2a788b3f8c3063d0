"""CUDA kernels against the reference; skipped cleanly without a GPU."""

import pytest
import torch

import sparsecore
from sparsecore import BSR, CSR
from conftest import random_dense, random_sparse, requires_cuda

pytestmark = [pytest.mark.cuda, requires_cuda]


@pytest.mark.parametrize("rows,cols", [(7, 96), (130, 257)])
@pytest.mark.parametrize("n", [1, 3, 129])
@pytest.mark.parametrize("vdtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("xdtype", [torch.float32, torch.bfloat16, torch.float16])
def test_cuda_csr_exact(rows, cols, n, vdtype, xdtype, gen):
    w = random_sparse(rows, cols, 0.3, gen)
    x = random_dense((n, cols), gen).to(xdtype)
    bias = random_dense((rows,), gen).to(xdtype)
    a = CSR.from_dense(w.cuda(), dtype=vdtype)
    got = sparsecore.sparse_linear(x.cuda(), a, bias.cuda()).cpu()
    want = (x.double() @ w.double().T + bias.double()).to(xdtype)
    assert torch.equal(got, want)


def test_cuda_bsr_runs_as_csr(gen):
    w = random_sparse(16, 32, 1.0, gen) * (torch.rand(16, 32, generator=gen) > 0.5)
    a = BSR.from_dense(w.cuda(), (4, 4))
    x = random_dense((5, 32), gen)
    got = sparsecore.sparse_linear(x.cuda(), a).cpu()
    assert torch.equal(got, (x.double() @ w.double().T).float())


def test_cuda_opcheck(gen):
    a = CSR.from_dense(random_sparse(12, 20, 0.4, gen).cuda())
    torch.library.opcheck(torch.ops.sparsecore.csr_mm,
                          (a.row_ptr, a.col_idx, a.values, a.row_chunks, a.bitmap, 20, random_dense((5, 20), gen).cuda(), None, True))


def test_cuda_nan_rule(gen):
    """The same rule as on the CPU: a non-finite row of x gives a NaN output row."""
    w = random_sparse(64, 128, 0.5, gen)
    nm = w * sparsecore.formats.nm.select_nm_mask(torch.rand(64, 128, generator=gen), 2, 4)
    for a in (CSR.from_dense(w.cuda()), sparsecore.NM.from_dense(nm, dtype=torch.bfloat16).to("cuda")):
        x = torch.ones(20, 128, dtype=a.dtype, device="cuda")
        x[3, 5] = float("inf")
        y = sparsecore.sparse_linear(x, a).float().cpu()
        assert torch.isnan(y[3]).all() and torch.isfinite(y[[0, 1, 2, 4]]).all()


def test_cuda_corrupted_indices_are_never_read(gen):
    a = CSR.from_dense(random_sparse(40, 64, 0.5, gen).cuda())
    col = a.col_idx.clone()
    col[0] = 30000
    y = torch.ops.sparsecore.csr_mm(a.row_ptr, col, a.values, a.row_chunks, a.bitmap, 64,
                                    torch.ones(3, 64, device="cuda"), None, True)
    torch.cuda.synchronize()
    assert torch.isfinite(y).all()


def test_cuda_nm_fallback_decompresses_once(gen):
    w = random_sparse(48, 64, 1.0, gen) * sparsecore.formats.nm.select_nm_mask(torch.rand(48, 64, generator=gen), 2, 4)
    a = sparsecore.NM.from_dense(w).to("cuda")  # fp32: no tensor cores
    assert not a.tensor_cores
    x = random_dense((3, 64), gen).cuda()
    y1 = sparsecore.sparse_linear(x, a)
    dense = a.dense_for(torch.float32)
    y2 = sparsecore.sparse_linear(x, a)
    assert a.dense_for(torch.float32) is dense and torch.equal(y1, y2)
    assert torch.equal(y1.cpu(), (x.cpu().double() @ w.double().T).float())


@pytest.mark.parametrize("vdtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("xdtype", [torch.bfloat16, torch.float16])
def test_cuda_nm_fallback_accumulates_in_fp32(vdtype, xdtype, gen):
    """Found on an H200: the fallback ran cuBLAS in bf16, whose split-K partial sums are
    rounded to bf16 (torch's default), 0.25 off an exactly representable result. 40 rows
    cannot use the tensor cores; k = 1104 makes cuBLAS split k."""
    w = (torch.randint(-8, 9, (40, 1104), generator=gen).float() / 8)
    w = w * sparsecore.formats.nm.select_nm_mask(torch.rand(40, 1104, generator=gen), 2, 4)
    x = torch.randint(-8, 9, (70, 1104), generator=gen).float() / 4
    a = sparsecore.NM.from_dense(w, dtype=vdtype).to("cuda")
    assert not a.runs_on_tensor_cores(xdtype)
    want = (x.to(xdtype).double() @ w.to(vdtype).double().T).to(xdtype)
    assert torch.equal(sparsecore.sparse_linear(x.to("cuda", xdtype), a).cpu(), want)
    assert torch.equal(sparsecore.spmm(a, x.to("cuda", xdtype).T).cpu(), want.T)


def test_cuda_nm_fallback_nan_rule(gen):
    """Found on an H200: the fp32 fallback gave Inf (not NaN) for a row of x holding Inf."""
    w = random_sparse(64, 128, 1.0, gen) * sparsecore.formats.nm.select_nm_mask(torch.rand(64, 128, generator=gen), 2, 4)
    a = sparsecore.NM.from_dense(w).to("cuda")
    x = torch.ones(20, 128, device="cuda")
    x[3, 7] = float("inf")
    x[11, 0] = float("nan")
    y = sparsecore.sparse_linear(x, a).cpu()
    assert torch.isnan(y[[3, 11]]).all() and torch.isfinite(y[[i for i in range(20) if i not in (3, 11)]]).all()
    y = sparsecore.spmm(a, x.T).cpu()
    assert torch.isnan(y[:, [3, 11]]).all()


def test_cuda_act_weight_sparse_layer_runs_the_kernel(gen):
    from sparsecore.activation import ActSparseLinear

    lin = torch.nn.Linear(64, 48)
    with torch.no_grad():
        lin.weight.mul_(torch.rand(48, 64, generator=gen) < 0.5)
    act = ActSparseLinear.from_linear(sparsecore.nn.SparseLinear.from_linear(lin), 0.3)
    x = torch.randn(4, 64, generator=gen)
    want = act(x)
    on_gpu = act.to("cuda")
    assert on_gpu.runs_bitmap is None and on_gpu.weight_sparse  # dense packed on the GPU, once
    torch.testing.assert_close(on_gpu(x.cuda()).cpu(), want, rtol=1e-5, atol=1e-5)
    back = on_gpu.to("cpu")
    assert back.runs_bitmap is not None
    torch.testing.assert_close(back(x), want, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_cuda_launches_on_the_tensors_device(gen):
    w = random_sparse(32, 64, 0.5, gen)
    a = CSR.from_dense(w.to("cuda:1"))
    x = random_dense((3, 64), gen)
    with torch.cuda.device(0):
        y = sparsecore.sparse_linear(x.to("cuda:1"), a)
    assert y.device == torch.device("cuda:1")
    assert torch.equal(y.cpu(), (x.double() @ w.double().T).float())

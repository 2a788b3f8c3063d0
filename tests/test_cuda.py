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

"""torch.library.opcheck on every op, and torch.compile per op family."""

import pytest
import torch

import sparsecore
from sparsecore import BSR, CSR
from conftest import random_dense, random_sparse


def _csr_args(gen, dtype=torch.float32):
    a = CSR.from_dense(random_sparse(12, 20, 0.4, gen), dtype=dtype)
    return a, (a.row_ptr, a.col_idx, a.values, a.row_chunks, a.bitmap, 20)


def _bsr_args(gen):
    a = BSR.from_dense(random_sparse(16, 24, 1.0, gen) * (torch.rand(16, 24, generator=gen) > 0.5), (4, 4))
    return a, (a.row_ptr, a.col_idx, a.values, a.row_chunks, 24)


@pytest.mark.parametrize("family", ["csr", "bsr"])
@pytest.mark.parametrize("linear", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_opcheck(family, linear, with_bias, gen):
    a, args = _csr_args(gen) if family == "csr" else _bsr_args(gen)
    rows, cols = a.shape
    dense = random_dense((5, cols), gen) if linear else random_dense((cols, 5), gen)
    bias = random_dense((rows,), gen) if with_bias else None
    op = getattr(torch.ops.sparsecore, f"{family}_mm")
    torch.library.opcheck(op, (*args, dense, bias, linear))
    out = torch.empty((5, rows) if linear else (rows, 5))
    op_out = getattr(torch.ops.sparsecore, f"{family}_mm_out")
    torch.library.opcheck(op_out, (*args, dense, bias, linear, out))


@pytest.mark.parametrize("fmt", ["csr", "bsr"])
def test_torch_compile(fmt, gen):
    w = random_sparse(16, 24, 0.5, gen)
    a = CSR.from_dense(w) if fmt == "csr" else BSR.from_dense(w, (4, 4))
    bias = random_dense((16,), gen)

    def block(x):
        return torch.relu(sparsecore.sparse_linear(x, a, bias)) * 2

    compiled = torch.compile(block, fullgraph=True)
    for n in (1, 3, 8):
        x = random_dense((n, 24), gen)
        assert torch.equal(compiled(x), block(x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_opcheck_csr_to_dense(dtype, gen):
    a, args = _csr_args(gen, dtype)
    torch.library.opcheck(torch.ops.sparsecore.csr_to_dense, (a.row_ptr, a.col_idx, a.values, 20))

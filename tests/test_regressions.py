"""Regression tests for wrong answers found by fuzzing the public API (issue 12)."""

import pytest
import torch

import sparsecore
from sparsecore import BSR, CSR, NM
from conftest import random_dense, random_sparse

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def weights(gen):
    w = random_sparse(12, 32, 0.5, gen)
    nm = w * sparsecore.formats.nm.select_nm_mask(torch.rand(12, 32, generator=gen), 2, 4)
    return [(CSR.from_dense(w), w), (CSR.from_dense(w, bitmap=True), w), (BSR.from_dense(w, (4, 4)), w),
            (NM.from_dense(nm, 2, 4), nm)]


def exact(got, want64):
    assert got.shape == want64.shape
    torch.testing.assert_close(got, want64.to(got.dtype), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_contiguous_nd_inputs(isa, dtype, gen):
    """A permuted or expanded N-D x used to be reshaped into a copy that was freed before
    the kernel read it (garbage ~1e17); every stride pattern must give the right answer."""
    for a, w in weights(gen):
        base = random_dense((5, 2, 32), gen).to(dtype)
        cases = {
            "permuted": base.transpose(0, 1),                        # (2, 5, 32), not viewable as 2-D
            "expanded": base[0].unsqueeze(0).expand(3, 2, 32),        # stride 0
            "sliced": random_dense((4, 6, 64), gen).to(dtype)[:, ::2, ::2],
            "transposed-2d": random_dense((32, 7), gen).to(dtype).T,
        }
        for name, x in cases.items():
            bias_full = random_dense((24,), gen).to(dtype)
            bias = bias_full[::2]                                     # a non-contiguous bias too
            want = x.double() @ w.double().T + bias.double()
            exact(sparsecore.sparse_linear(x, a, bias), want)


@pytest.mark.parametrize("fmt", ["csr", "bsr", "nm"])
def test_empty_in_features_give_the_bias(isa, fmt):
    rows = 8
    w = torch.zeros(rows, 0)
    a = {"csr": lambda: CSR.from_dense(w), "bsr": lambda: BSR.from_dense(w, (4, 4)),
         "nm": lambda: NM.from_dense(w, 2, 4)}[fmt]()
    bias = torch.arange(rows, dtype=torch.float32)
    # Leave partial sums in this thread's kernel scratch: the N:M panel kernel used to copy
    # its (never written) scratch to the output for k = 0.
    dirty = NM.from_dense(torch.ones(64, 64) * (torch.arange(64) % 4 < 2), 2, 4)
    sparsecore.sparse_linear(torch.ones(20, 64), dirty)
    for n in (1, 3, 20):  # 20: the N:M panel kernel, whose loops never ran for k = 0
        x = torch.empty(n, 0)
        out = torch.full((n, rows), float("nan"))  # never written would stay NaN
        sparsecore.sparse_linear(x, a, bias, out=out)
        torch.testing.assert_close(out, bias.expand(n, rows), rtol=0, atol=0)
        out = torch.full((n, rows), float("nan"))
        sparsecore.sparse_linear(x, a, out=out)
        torch.testing.assert_close(out, torch.zeros(n, rows), rtol=0, atol=0)


def test_nm_from_dense_of_empty_weights():
    for shape in [(0, 16), (5, 0), (0, 0)]:
        a = NM.from_dense(torch.zeros(shape), 2, 4)
        assert a.shape == shape and a.nnz == 0
        assert torch.equal(a.to_dense(), torch.zeros(shape))
        y = sparsecore.sparse_linear(torch.ones(2, shape[1]), a)
        assert y.shape == (2, shape[0]) and not y.any()


def test_csr_takes_int64_indices_from_torch_sparse(gen):
    w = random_sparse(9, 70000, 0.001, gen)
    for cols in (w.shape[1], 300):
        dense = w[:, :cols]
        t = dense.to_sparse_csr()
        assert t.col_indices().dtype == torch.int64
        a = CSR(t.crow_indices(), t.col_indices(), t.values(), tuple(t.shape))
        assert a.col_idx.dtype == (torch.int16 if cols <= 65536 else torch.int32)
        assert torch.equal(a.to_dense(), dense)
    with pytest.raises(ValueError, match="out of range"):
        CSR(torch.tensor([0, 1]), torch.tensor([-1]), torch.ones(1), (1, 4))


def test_bsr_csr_form_is_built_from_the_blocks(gen):
    """The CSR a CUDA BSR runs as, built without a dense intermediate (checked on the CPU)."""
    for block in [(1, 4), (4, 4), (8, 2), (16, 16)]:
        bh, bw = block
        bmask = torch.rand(48 // bh, 64 // bw, generator=gen) < 0.4
        w = random_sparse(48, 64, 1.0, gen) * bmask.repeat_interleave(bh, 0).repeat_interleave(bw, 1)
        a = BSR.from_dense(w, block, block_mask=bmask)
        c = a.csr_for_cuda()
        assert torch.equal(c.to_dense(), a.to_dense()) and c.nnz == a.nnz
        assert a.csr_for_cuda() is c  # built once


def test_nm_dense_form_is_kept_per_dtype(gen):
    w = random_sparse(16, 32, 1.0, gen) * sparsecore.formats.nm.select_nm_mask(torch.rand(16, 32, generator=gen), 2, 4)
    a = NM.from_dense(w)
    d = a.dense_for(torch.bfloat16)
    assert d.dtype == torch.bfloat16 and a.dense_for(torch.bfloat16) is d
    assert torch.equal(a.dense_for(torch.float32), w)
    assert not a.runs_on_tensor_cores(torch.float32)  # CPU: never

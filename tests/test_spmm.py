"""CSR / BSR matmul on every ISA path against a float64 reference.

Exact checks: inputs are small integers over powers of two, so fp32 accumulation is
exact and each output must equal the reference rounded once to the output dtype.
Tolerance checks (normal inputs): error at most 2x torch's own error at the same
precision, plus a small atol, as flash-attention's tests do.
"""

import pytest
import torch

import sparsecore
from sparsecore import BSR, CSR
from conftest import random_dense, random_sparse

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def reference_linear(w, x, bias=None):
    y = x.double() @ w.double().T
    return y + bias.double() if bias is not None else y


def assert_exact(got, want_f64):
    want = want_f64.to(got.dtype)
    assert got.shape == want.shape
    diff = (got.double() - want.double()).abs()
    assert diff.max().item() == 0.0 if diff.numel() else True, f"max diff {diff.max().item()}"


@pytest.mark.parametrize("rows,cols,density", [(7, 96, 0.4), (33, 333, 0.1), (1, 17, 1.0), (130, 257, 0.5),
                                               (16, 40, 0.0)])
@pytest.mark.parametrize("n", [1, 3, 17, 64])
@pytest.mark.parametrize("vdtype", DTYPES)
@pytest.mark.parametrize("xdtype", DTYPES)
@pytest.mark.parametrize("bitmap", [False, True], ids=["indices", "bitmap"])
def test_csr_linear_exact(isa, rows, cols, density, n, vdtype, xdtype, bitmap, gen):
    w = random_sparse(rows, cols, density, gen)
    x = random_dense((n, cols), gen).to(xdtype)
    bias = random_dense((rows,), gen).to(xdtype)
    a = CSR.from_dense(w, dtype=vdtype, bitmap=bitmap)
    assert bool(a.bitmap.numel()) == bitmap
    assert_exact(sparsecore.sparse_linear(x, a, bias), reference_linear(w, x, bias))
    assert_exact(sparsecore.sparse_linear(x, a), reference_linear(w, x))
    # spmm form: A @ B with B = x.T (a non-contiguous view: strides are read, nothing copied)
    assert_exact(sparsecore.spmm(a, x.T), reference_linear(w, x).T)


@pytest.mark.parametrize("block", [(1, 4), (4, 4), (8, 8), (16, 16), (32, 32), (64, 64), (2, 8), (8, 1)])
@pytest.mark.parametrize("n", [1, 5, 40])
@pytest.mark.parametrize("vdtype", DTYPES)
def test_bsr_linear_exact(isa, block, n, vdtype, gen):
    bh, bw = block
    rows, cols = 2 * 64, 3 * 64
    bmask = torch.rand(rows // bh, cols // bw, generator=gen) < 0.4
    w = random_sparse(rows, cols, 1.0, gen) * bmask.repeat_interleave(bh, 0).repeat_interleave(bw, 1)
    a = BSR.from_dense(w, block, block_mask=bmask, dtype=vdtype)
    for xdtype in (torch.float32, torch.bfloat16):
        x = random_dense((n, cols), gen).to(xdtype)
        bias = random_dense((rows,), gen).to(xdtype)
        assert_exact(sparsecore.sparse_linear(x, a, bias), reference_linear(w, x, bias))
        assert_exact(sparsecore.spmm(a, x.T.contiguous()), reference_linear(w, x).T)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_csr_tolerance_normal_inputs(isa, dtype, gen):
    """Random normal data: error vs float64 within 2x torch's dense error at the same precision."""
    w = random_sparse(200, 300, 0.3, gen, integer=False)
    x = torch.randn(9, 300, generator=gen)
    ref = reference_linear(w, x)
    a = CSR.from_dense(w.to(dtype))
    got = sparsecore.sparse_linear(x.to(dtype), a).double()
    torch_err = (torch.nn.functional.linear(x.to(dtype), w.to(dtype)).double() - ref).abs().max().item()
    our_err = (got - ref).abs().max().item()
    assert our_err <= 2 * torch_err + 1e-5, (our_err, torch_err)


def test_leading_dims_vectors_and_strides(isa, gen):
    w = random_sparse(20, 30, 0.3, gen)
    a = CSR.from_dense(w)
    x3 = random_dense((2, 3, 30), gen)
    assert_exact(sparsecore.sparse_linear(x3, a), reference_linear(w, x3.reshape(6, 30)).reshape(2, 3, 20))
    v = random_dense((30,), gen)
    assert_exact(sparsecore.sparse_linear(v, a), reference_linear(w, v[None])[0])
    assert_exact(sparsecore.spmm(a, v), reference_linear(w, v[None])[0])
    wide = random_dense((30, 50), gen)
    sliced = wide[:, ::3]  # non-contiguous columns
    assert_exact(sparsecore.spmm(a, sliced), w.double() @ sliced.double())
    xs = random_dense((8, 60), gen)[:, ::2]
    assert_exact(sparsecore.sparse_linear(xs, a), reference_linear(w, xs))


def test_out_argument(isa, gen):
    w = random_sparse(20, 30, 0.3, gen)
    a = CSR.from_dense(w)
    x = random_dense((4, 30), gen)
    out = torch.full((4, 20), 7.0)
    res = sparsecore.sparse_linear(x, a, out=out)
    assert res is out
    assert_exact(out, reference_linear(w, x))
    out_t = torch.empty(20, 4).T  # strided out
    sparsecore.sparse_linear(x, a, out=out_t)
    assert_exact(out_t, reference_linear(w, x))
    out2 = torch.empty(20, 4)
    sparsecore.spmm(a, x.T, out=out2)
    assert_exact(out2, reference_linear(w, x).T)
    with pytest.raises(ValueError, match="out has shape"):
        sparsecore.spmm(a, x.T, out=torch.empty(3, 4))
    with pytest.raises(ValueError, match="out must be"):
        sparsecore.spmm(a, x.T, out=torch.empty(20, 4, dtype=torch.bfloat16))


def test_empty_shapes(isa):
    a = CSR.from_dense(torch.zeros(5, 7))
    assert sparsecore.sparse_linear(torch.ones(0, 7), a).shape == (0, 5)
    assert torch.equal(sparsecore.sparse_linear(torch.ones(3, 7), a, torch.ones(5)), torch.ones(3, 5))
    e = CSR.from_dense(torch.zeros(0, 7))
    assert sparsecore.sparse_linear(torch.ones(2, 7), e).shape == (2, 0)
    k0 = CSR.from_dense(torch.zeros(4, 0))
    assert torch.equal(sparsecore.sparse_linear(torch.ones(2, 0), k0, torch.full((4,), 2.0)), torch.full((2, 4), 2.0))


@pytest.mark.parametrize("bitmap", [False, True], ids=["indices", "bitmap"])
@pytest.mark.parametrize("vdtype", DTYPES)
def test_large_problem_uses_threads_and_matches(isa, bitmap, vdtype, gen):
    w = random_sparse(512, 1027, 0.3, gen)
    a = CSR.from_dense(w, dtype=vdtype, bitmap=bitmap)
    x = random_dense((70, 1027), gen)
    assert_exact(sparsecore.sparse_linear(x, a), reference_linear(w, x))
    x1 = random_dense((1, 1027), gen)
    assert_exact(sparsecore.sparse_linear(x1, a), reference_linear(w, x1))


# ---------------------------------------------------------------- bad input
def test_bad_inputs_raise(gen):
    w = random_sparse(6, 8, 0.5, gen)
    a = CSR.from_dense(w)
    with pytest.raises(ValueError, match="last dimension"):
        sparsecore.sparse_linear(torch.ones(2, 7), a)
    with pytest.raises(ValueError, match="8 rows"):
        sparsecore.spmm(a, torch.ones(7, 2))
    with pytest.raises(TypeError, match="not supported"):
        sparsecore.sparse_linear(torch.ones(2, 8, dtype=torch.float64), a)
    with pytest.raises(TypeError, match="not supported"):
        sparsecore.sparse_linear(torch.ones(2, 8, dtype=torch.int32), a)
    with pytest.raises(ValueError, match="bias must hold 6"):
        sparsecore.sparse_linear(torch.ones(2, 8), a, torch.ones(5))
    with pytest.raises(ValueError, match="is on meta"):
        sparsecore.sparse_linear(torch.ones(2, 8, device="meta"), a)
    with pytest.raises(TypeError, match="sparsecore.CSR, BSR or NM"):
        sparsecore.spmm(w, torch.ones(8, 2))
    with pytest.raises(TypeError, match="dense"):
        sparsecore.spmm(a, torch.ones(8, 2).to_sparse())
    with pytest.raises(TypeError, match="torch.Tensor"):
        sparsecore.spmm(a, [[1.0]])


def test_concurrent_calls_from_python_threads(gen):
    """The pool serves one call at a time; concurrent callers run inline and stay correct."""
    import threading

    w = random_sparse(300, 700, 0.3, gen)
    a = CSR.from_dense(w)
    xs = [random_dense((n, 700), gen) for n in (1, 3, 8, 40)]
    want = [reference_linear(w, x) for x in xs]
    errors = []

    def worker(i):
        for _ in range(20):
            got = sparsecore.sparse_linear(xs[i], a)
            if not torch.equal(got, want[i].float()):
                errors.append(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("index_dtype", [None, torch.int32])
@pytest.mark.parametrize("rows,cols,density", [(1, 1, 1.0), (7, 13, 0.3), (65, 2050, 0.5), (300, 40, 0.0),
                                               (33, 70000, 0.01)])
def test_csr_to_dense_is_exact(dtype, index_dtype, rows, cols, density, gen):
    """The native scatter (CSR.to_dense on CPU) gives the weight bit for bit, every dtype,
    index width (uint16 where the columns allow, int32) and shape, empty rows included."""
    w = random_sparse(rows, cols, density, gen).to(dtype)
    if cols > 65536 and index_dtype is None:
        index_dtype = torch.int32
    a = CSR.from_dense(w, index_dtype=index_dtype)
    got = a.to_dense()
    assert got.dtype == dtype and got.shape == (rows, cols)
    assert torch.equal(got.view(torch.int16 if dtype != torch.float32 else torch.int32),
                       w.view(torch.int16 if dtype != torch.float32 else torch.int32))


def test_csr_to_dense_bad_inputs(gen):
    a = CSR.from_dense(random_sparse(6, 9, 0.5, gen))
    op = torch.ops.sparsecore.csr_to_dense
    bad_ptr = a.row_ptr.clone()
    bad_ptr[2] = 10**6
    with pytest.raises(ValueError):
        op(bad_ptr, a.col_idx, a.values, 9)
    bad_cols = a.col_idx.clone()
    bad_cols[0] = 8
    bad_cols[-1] = 100 if bad_cols.dtype == torch.int32 else 100
    with pytest.raises(ValueError):
        op(a.row_ptr, bad_cols, a.values, 9)
    with pytest.raises(ValueError, match="n_cols"):
        op(a.row_ptr, a.col_idx, a.values, -1)
    with pytest.raises(TypeError):
        op(a.row_ptr, a.col_idx, a.values.to(torch.int32), 9)
    with pytest.raises(ValueError):
        op(a.row_ptr, a.col_idx[:-1], a.values, 9)

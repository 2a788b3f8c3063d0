import pytest
import torch

import sparsecore
from sparsecore import BSR, CSR
from conftest import random_sparse

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


@pytest.mark.parametrize("dtype", DTYPES)
def test_csr_round_trip(dtype, gen):
    w = random_sparse(37, 53, 0.3, gen).to(dtype)
    a = CSR.from_dense(w)
    assert a.nnz == int((w != 0).sum())
    assert a.col_idx.dtype == torch.int16  # compact indices: 53 columns fit in uint16
    assert torch.equal(a.to_dense(), w)
    t = a.to_torch()
    assert t.layout == torch.sparse_csr and torch.equal(t.to_dense(), w)
    b = CSR.from_torch(t)
    assert torch.equal(b.to_dense(), w)
    coo = CSR.from_torch(w.to_sparse())
    assert torch.equal(coo.to_dense(), w)


def test_csr_uint16_indices_above_int16_range(gen):
    cols = 40000  # column indices past 32767 must survive the uint16-in-int16 storage
    w = torch.zeros(3, cols)
    w[0, 39999] = 1.0
    w[1, 32768] = 2.0
    w[2, 5] = 3.0
    a = CSR.from_dense(w)
    assert a.col_idx.dtype == torch.int16
    assert torch.equal(a.to_dense(), w)
    x = torch.arange(cols, dtype=torch.float32)
    y = sparsecore.spmm(a, x)
    assert y.tolist() == [39999.0, 2 * 32768.0, 15.0]


def test_csr_int32_indices_when_forced(gen):
    w = random_sparse(5, 9, 0.5, gen)
    a = CSR.from_dense(w, index_dtype=torch.int32)
    assert a.col_idx.dtype == torch.int32 and torch.equal(a.to_dense(), w)


def test_csr_mask_and_threshold(gen):
    w = torch.randn(6, 7, generator=gen)
    mask = torch.rand(6, 7, generator=gen) > 0.5
    a = CSR.from_dense(w, mask=mask)
    assert a.nnz == int(mask.sum()) and torch.equal(a.to_dense(), w * mask)
    b = CSR.from_dense(w, threshold=0.5)
    assert torch.equal(b.to_dense(), torch.where(w.abs() > 0.5, w, torch.zeros(())))
    c = CSR.from_dense(w, dtype=torch.bfloat16)
    assert c.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="either mask or threshold"):
        CSR.from_dense(w, mask=mask, threshold=0.1)
    with pytest.raises(ValueError, match="mask shape"):
        CSR.from_dense(w, mask=mask[:, :3])
    with pytest.raises(ValueError, match="threshold"):
        CSR.from_dense(w, threshold=-1.0)


def test_bytes_per_nonzero(gen):
    w = random_sparse(64, 64, 0.5, gen)
    a32 = CSR.from_dense(w)
    a16 = CSR.from_dense(w, dtype=torch.bfloat16)
    row_ptr_bytes = 8 * 65 / a32.nnz
    assert a32.bytes_per_nonzero == pytest.approx(4 + 2 + row_ptr_bytes)
    assert a16.bytes_per_nonzero == pytest.approx(2 + 2 + row_ptr_bytes)


@pytest.mark.parametrize("block", [(1, 4), (4, 4), (8, 8), (16, 16), (32, 32), (64, 64), (2, 8), (8, 1)])
def test_bsr_round_trip(block, gen):
    bh, bw = block
    rows, cols = 2 * 64, 3 * 64
    block_mask = torch.rand(rows // bh, cols // bw, generator=gen) < 0.4
    w = torch.randn(rows, cols, generator=gen) * block_mask.repeat_interleave(bh, 0).repeat_interleave(bw, 1)
    a = BSR.from_dense(w, block)
    assert a.blocksize == block and a.nnzb == int(block_mask.sum())
    assert torch.equal(a.to_dense(), w)
    t = a.to_torch()
    assert t.layout == torch.sparse_bsr and torch.equal(t.to_dense(), w)
    assert torch.equal(BSR.from_torch(t).to_dense(), w)
    m = BSR.from_dense(w, block, block_mask=block_mask)
    assert m.nnzb == int(block_mask.sum())


def test_bsr_threshold_and_shapes(gen):
    w = torch.randn(8, 8, generator=gen)
    a = BSR.from_dense(w, (4, 4), threshold=100.0)
    assert a.nnzb == 0 and torch.equal(a.to_dense(), torch.zeros(8, 8))
    with pytest.raises(ValueError, match="not a multiple of the block shape"):
        BSR.from_dense(torch.randn(6, 8), (4, 4))
    with pytest.raises(ValueError, match="block_mask must have shape"):
        BSR.from_dense(w, (4, 4), block_mask=torch.ones(3, 3, dtype=torch.bool))


# ---------------------------------------------------------------- bad input
def _parts(gen):
    w = random_sparse(4, 6, 0.6, gen)
    a = CSR.from_dense(w, index_dtype=torch.int32)
    return a.row_ptr.clone(), a.col_idx.clone(), a.values.clone()


def test_csr_rejects_unsorted_columns():
    with pytest.raises(ValueError, match="not sorted"):
        CSR(torch.tensor([0, 2]), torch.tensor([3, 1], dtype=torch.int32), torch.ones(2), (1, 6))


def test_csr_rejects_duplicate_columns():
    with pytest.raises(ValueError, match="not sorted and unique"):
        CSR(torch.tensor([0, 2]), torch.tensor([1, 1], dtype=torch.int32), torch.ones(2), (1, 6))


def test_csr_rejects_out_of_range_columns():
    with pytest.raises(ValueError, match="out of range"):
        CSR(torch.tensor([0, 1]), torch.tensor([6], dtype=torch.int32), torch.ones(1), (1, 6))
    with pytest.raises(ValueError, match="out of range"):
        CSR(torch.tensor([0, 1]), torch.tensor([-1], dtype=torch.int32), torch.ones(1), (1, 6))


def test_csr_rejects_bad_row_ptr():
    with pytest.raises(ValueError, match="non-decreasing"):
        CSR(torch.tensor([0, 2, 1, 3]), torch.tensor([0, 1, 2], dtype=torch.int32), torch.ones(3), (3, 6))
    with pytest.raises(ValueError, match=r"row_ptr\[0\] must be 0"):
        CSR(torch.tensor([1, 1]), torch.tensor([], dtype=torch.int32), torch.ones(0), (1, 6))
    with pytest.raises(ValueError, match="does not match the number of stored entries"):
        CSR(torch.tensor([0, 3]), torch.tensor([0, 1], dtype=torch.int32), torch.ones(2), (1, 6))
    with pytest.raises(ValueError, match="rows \\+ 1"):
        CSR(torch.tensor([0, 1]), torch.tensor([0], dtype=torch.int32), torch.ones(1), (2, 6))
    with pytest.raises(TypeError, match="int64"):
        CSR(torch.tensor([0, 1], dtype=torch.int32), torch.tensor([0], dtype=torch.int32), torch.ones(1), (1, 6))


def test_csr_rejects_length_dtype_and_value_problems():
    with pytest.raises(ValueError, match="same length"):
        CSR(torch.tensor([0, 2]), torch.tensor([0, 1], dtype=torch.int32), torch.ones(3), (1, 6))
    with pytest.raises(TypeError, match="integer"):
        CSR(torch.tensor([0, 1]), torch.tensor([0.0]), torch.ones(1), (1, 6))
    with pytest.raises(ValueError, match="out of range"):
        CSR(torch.tensor([0, 1]), torch.tensor([6]), torch.ones(1), (1, 6))
    with pytest.raises(TypeError, match="not supported"):
        CSR(torch.tensor([0, 1]), torch.tensor([0], dtype=torch.int32), torch.ones(1, dtype=torch.float64), (1, 6))
    with pytest.raises(ValueError, match="NaN or Inf"):
        CSR(torch.tensor([0, 1]), torch.tensor([0], dtype=torch.int32), torch.tensor([float("nan")]), (1, 6))
    with pytest.raises(ValueError, match="NaN or Inf"):
        CSR.from_dense(torch.tensor([[1.0, float("inf")]]))
    with pytest.raises(ValueError, match="2-D"):
        CSR.from_dense(torch.ones(3))
    with pytest.raises(TypeError, match="torch.Tensor"):
        CSR([0, 1], torch.tensor([0], dtype=torch.int32), torch.ones(1), (1, 6))
    with pytest.raises(ValueError, match="non-negative"):
        CSR(torch.tensor([0]), torch.tensor([], dtype=torch.int32), torch.ones(0), (-1, 6))


def test_csr_rejects_mixed_devices():
    with pytest.raises(ValueError, match="one device"):
        CSR(torch.tensor([0, 1]), torch.tensor([0], dtype=torch.int32), torch.ones(1, device="meta"), (1, 6))


def test_bsr_rejects_bad_parts():
    values = torch.ones(2, 4, 4)
    with pytest.raises(ValueError, match="not sorted"):
        BSR(torch.tensor([0, 2]), torch.tensor([1, 0], dtype=torch.int32), values, (4, 8))
    with pytest.raises(ValueError, match="out of range"):
        BSR(torch.tensor([0, 2]), torch.tensor([0, 2], dtype=torch.int32), values, (4, 8))
    with pytest.raises(ValueError, match="not a multiple"):
        BSR(torch.tensor([0, 2]), torch.tensor([0, 1], dtype=torch.int32), values, (4, 6))
    with pytest.raises(ValueError, match="holds 2 blocks"):
        BSR(torch.tensor([0, 1]), torch.tensor([0], dtype=torch.int32), values, (4, 8))
    with pytest.raises(ValueError, match="1..256"):
        BSR(torch.tensor([0, 1]), torch.tensor([0], dtype=torch.int32), torch.ones(1, 1, 512), (1, 512))
    bad = values.clone()
    bad[1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        BSR(torch.tensor([0, 2]), torch.tensor([0, 1], dtype=torch.int32), bad, (4, 8))


def test_in_place_index_edit_is_caught(gen):
    a = CSR.from_dense(random_sparse(4, 6, 0.6, gen))
    a.col_idx[0] = 5
    with pytest.raises(ValueError, match="modified in place"):
        sparsecore.spmm(a, torch.ones(6, 2))

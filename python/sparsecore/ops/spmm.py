"""CSR and BSR sparse x dense matmul as torch ops: ``sparsecore::csr_mm[_out]``, ``bsr_mm[_out]``,
and ``sparsecore::csr_to_dense`` (the matrix written densely, for a prefill that runs
faster through the dense GEMM).

Each op computes either ``A @ B`` (``linear=False``; B is K x N) or ``x @ A.T + bias``
(``linear=True``; x is ... x K), in the dense operand's dtype with fp32 accumulation. The
kernels read any strides, so neither form copies or transposes its inputs. Arguments are
the format's tensors (see :class:`sparsecore.CSR`, :class:`sparsecore.BSR`); every one is
checked here, and the kernels reject index contents that point outside the matrix.
"""

from __future__ import annotations

import torch

from .._dtypes import VALUE_DTYPES, dtype_code, index_code, matrix_tuple
from .._native import _C
from ._common import on_device, require, stream_of
from ._library import lib, register_matmul

INDEX_DTYPES = (torch.int16, torch.int32)

# row_chunks and bitmap are the plan (bitmap: uint8, empty when the plan has none; both
# ignored on CUDA); for BSR, values is nnzb x block_h x block_w.
_TAIL = "int n_cols, Tensor dense, Tensor? bias, bool linear"
lib.define(f"csr_mm(Tensor row_ptr, Tensor col_idx, Tensor values, Tensor row_chunks, Tensor bitmap, {_TAIL}) "
           "-> Tensor")
lib.define(f"csr_mm_out(Tensor row_ptr, Tensor col_idx, Tensor values, Tensor row_chunks, Tensor bitmap, {_TAIL}, "
           "Tensor(a!) out) -> ()")
lib.define("csr_to_dense(Tensor row_ptr, Tensor col_idx, Tensor values, int n_cols) -> Tensor")
lib.define(f"bsr_mm(Tensor row_ptr, Tensor col_idx, Tensor values, Tensor row_chunks, {_TAIL}) -> Tensor")
lib.define(f"bsr_mm_out(Tensor row_ptr, Tensor col_idx, Tensor values, Tensor row_chunks, {_TAIL}, "
           "Tensor(a!) out) -> ()")


def _check_compressed(row_ptr, col_idx, values, values_ndim: int, n_cols: int, what: str) -> torch.device:
    require(values, f"{what} values", dtype=VALUE_DTYPES, ndim=values_ndim)
    device = values.device
    require(row_ptr, f"{what} row_ptr", dtype=torch.int64, ndim=1, device=device)
    if row_ptr.numel() < 1:
        raise ValueError(f"{what} row_ptr must hold rows + 1 >= 1 entries")
    require(col_idx, f"{what} col_idx", dtype=INDEX_DTYPES, ndim=1, numel=values.shape[0] if values.dim() else 0,
            device=device)
    if int(n_cols) < 0:
        raise ValueError(f"n_cols must be >= 0, got {n_cols}")
    return device


def _cpu_plan(t, name: str, dtype) -> torch.Tensor:
    return require(t, name, dtype=dtype, ndim=1, device=torch.device("cpu"))


def _csr_check(row_ptr, col_idx, values, row_chunks, bitmap, n_cols) -> int:
    device = _check_compressed(row_ptr, col_idx, values, 1, n_cols, "CSR")
    rows = row_ptr.numel() - 1
    if col_idx.dtype == torch.int16 and n_cols > 65536:
        raise ValueError(f"int16 (uint16) column indices cannot address {n_cols} columns")
    if device.type != "cuda":
        _cpu_plan(row_chunks, "row_chunks", torch.int64)
        _cpu_plan(bitmap, "bitmap", torch.uint8)
        if bitmap.numel() and bitmap.numel() != rows * _C.bitmap_row_bytes(n_cols):
            raise ValueError(f"bitmap plan must hold rows x bitmap_row_bytes(n_cols) = "
                             f"{rows * _C.bitmap_row_bytes(n_cols)} bytes, got {bitmap.numel()}")
    return rows


def _csr_launch(row_ptr, col_idx, values, row_chunks, bitmap, n_cols, ops) -> None:
    on_cuda = values.device.type == "cuda"
    chunks_ptr, num_chunks, bitmap_ptr = 0, 0, 0
    if not on_cuda:
        if row_chunks.numel() >= 2:
            chunks_ptr, num_chunks = row_chunks.data_ptr(), row_chunks.numel() - 1
        if bitmap.numel():
            bitmap_ptr = bitmap.data_ptr()
    with on_device(values):
        _C.csr_spmm(row_ptr.numel() - 1, n_cols, values.numel(), row_ptr.data_ptr(), col_idx.data_ptr(),
                    index_code(col_idx), values.data_ptr(), dtype_code(values.dtype, "values"), chunks_ptr,
                    num_chunks, bitmap_ptr, ops.b, ops.bias_ptr, ops.bias_dtype, ops.c, on_cuda, stream_of(values))


def _bsr_check(row_ptr, col_idx, values, row_chunks, n_cols) -> int:
    device = _check_compressed(row_ptr, col_idx, values, 3, n_cols, "BSR")
    if device.type != "cpu":
        raise ValueError("the BSR op runs on CPU; on CUDA, BSR matrices run through their CSR form (sparsecore.spmm)")
    bh, bw = values.shape[1], values.shape[2]
    if not (1 <= bh <= 256 and 1 <= bw <= 256):
        raise ValueError(f"BSR block shape {bh}x{bw} is not supported (each side must be 1..256)")
    if n_cols % bw:
        raise ValueError(f"n_cols {n_cols} is not a multiple of the block width {bw}")
    if col_idx.dtype == torch.int16 and n_cols // bw > 65536:
        raise ValueError(f"int16 (uint16) block indices cannot address {n_cols // bw} block columns")
    _cpu_plan(row_chunks, "row_chunks", torch.int64)
    return (row_ptr.numel() - 1) * bh


def _bsr_launch(row_ptr, col_idx, values, row_chunks, n_cols, ops) -> None:
    bh, bw = values.shape[1], values.shape[2]
    chunks_ptr, num_chunks = (row_chunks.data_ptr(), row_chunks.numel() - 1) if row_chunks.numel() >= 2 else (0, 0)
    _C.bsr_spmm(row_ptr.numel() - 1, n_cols // bw, bh, bw, values.shape[0], row_ptr.data_ptr(), col_idx.data_ptr(),
                index_code(col_idx), values.data_ptr(), dtype_code(values.dtype, "values"), chunks_ptr, num_chunks,
                ops.b, ops.bias_ptr, ops.bias_dtype, ops.c)


register_matmul("csr", _csr_check, _csr_launch, devices=("cpu", "cuda"))
register_matmul("bsr", _bsr_check, _bsr_launch, devices=("cpu",))


@torch.library.impl("sparsecore::csr_to_dense", "cpu", lib=lib)
def _csr_to_dense(row_ptr, col_idx, values, n_cols):
    """The CSR matrix as a dense (rows x n_cols) tensor of the values' dtype; values copied exactly."""
    device = _check_compressed(row_ptr, col_idx, values, 1, n_cols, "CSR")
    if device.type != "cpu":
        raise ValueError("csr_to_dense runs on CPU")
    if col_idx.dtype == torch.int16 and n_cols > 65536:
        raise ValueError(f"int16 (uint16) column indices cannot address {n_cols} columns")
    rows = row_ptr.numel() - 1
    out = torch.empty(rows, int(n_cols), dtype=values.dtype)
    _C.csr_to_dense(rows, int(n_cols), values.numel(), row_ptr.data_ptr(), col_idx.data_ptr(), index_code(col_idx),
                    values.data_ptr(), dtype_code(values.dtype, "values"), matrix_tuple(out))
    return out


@torch.library.register_fake("sparsecore::csr_to_dense", lib=lib)
def _csr_to_dense_fake(row_ptr, col_idx, values, n_cols):
    return values.new_empty(row_ptr.shape[0] - 1, n_cols)

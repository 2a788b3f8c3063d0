"""N:M semi-structured sparse x dense matmul as torch ops: ``sparsecore::nm_mm[_out]``.

Arguments are :class:`sparsecore.NM`'s tensors: ``values`` (rows x cols*n/m), ``bitmap``
(rows x ``bitmap_row_bytes(cols)`` uint8) and ``mma_meta`` (int32, the 2:4 tensor-core
metadata on CUDA; empty otherwise). Every tensor is checked here; the CPU kernels check
that each group of the bitmap marks exactly its share of values as they read it.
"""

from __future__ import annotations

import torch

from .._dtypes import VALUE_DTYPES, dtype_code, matrix_tuple
from .._native import _C
from ..formats.nm import SUPPORTED_M, nm_to_dense
from ._common import on_device, require, stream_of
from ._library import lib, register_matmul

lib.define("nm_mm(Tensor values, Tensor bitmap, Tensor mma_meta, int n, int m, int n_cols, Tensor dense, "
           "Tensor? bias, bool linear) -> Tensor")
lib.define("nm_mm_out(Tensor values, Tensor bitmap, Tensor mma_meta, int n, int m, int n_cols, Tensor dense, "
           "Tensor? bias, bool linear, Tensor(a!) out) -> ()")


def check_nm_parts(values, bitmap, mma_meta, n: int, m: int, n_cols: int) -> int:
    """O(1) checks of the raw N:M arguments; returns the row count."""
    require(values, "N:M values", dtype=VALUE_DTYPES, ndim=2)
    device = values.device
    if m not in SUPPORTED_M or not 1 <= n < m:
        raise ValueError(f"N:M pattern {n}:{m} is not supported: m must be one of {SUPPORTED_M} and 1 <= n < m")
    if n_cols < 0 or n_cols % m:
        raise ValueError(f"n_cols {n_cols} must be a non-negative multiple of m = {m}")
    rows = values.shape[0]
    if values.shape[1] != n_cols // m * n:
        raise ValueError(f"N:M values must have shape {(rows, n_cols // m * n)} for a {rows}x{n_cols} {n}:{m} "
                         f"matrix, got {tuple(values.shape)}")
    require(bitmap, "N:M bitmap", dtype=torch.uint8, ndim=2, device=device)
    if tuple(bitmap.shape) != (rows, _C.bitmap_row_bytes(n_cols)):
        raise ValueError(f"N:M bitmap must have shape {(rows, _C.bitmap_row_bytes(n_cols))}, got "
                         f"{tuple(bitmap.shape)}")
    require(mma_meta, "mma_meta", dtype=torch.int32, ndim=1, device=device)
    if mma_meta.numel():
        if device.type != "cuda" or (n, m) != (2, 4) or values.dtype == torch.float32 or rows % 16 or n_cols % 32:
            raise ValueError("mma_meta is only for 2:4 bf16/fp16 weights on CUDA with rows % 16 == 0 and "
                             "n_cols % 32 == 0; pass an empty int32 tensor otherwise")
        if mma_meta.numel() != _C.nm24_metadata_words(rows, n_cols):
            raise ValueError(f"mma_meta must hold {_C.nm24_metadata_words(rows, n_cols)} words, got "
                             f"{mma_meta.numel()}")
    return rows


def _nm_launch(values, bitmap, mma_meta, n, m, n_cols, ops) -> None:
    if values.device.type == "cuda":
        _nm_run_cuda(values, bitmap, mma_meta, n_cols, ops)
        return
    _C.nm_spmm(values.shape[0], n_cols, n, m, values.data_ptr(), dtype_code(values.dtype, "values"),
               bitmap.data_ptr(), ops.b, ops.bias_ptr, ops.bias_dtype, ops.c)


def _nm_run_cuda(values, bitmap, mma_meta, n_cols, ops):
    rows, dense, bias, linear, out = values.shape[0], ops.dense, ops.bias, ops.linear, ops.out
    if mma_meta.numel() and dense.dtype == values.dtype and n_cols > 0:
        # Sparse tensor cores read B k-contiguous (x @ W.T: rows of x); copy only when it is not.
        x2 = dense.reshape(-1, n_cols) if linear else dense.t()
        if x2.stride(-1) != 1 or (x2.shape[0] > 1 and x2.stride(0) % 2) or x2.data_ptr() % 4:
            x2 = x2.contiguous()
        with on_device(values):
            _C.nm24_spmm(rows, n_cols, values.data_ptr(), dtype_code(values.dtype, "values"), mma_meta.data_ptr(),
                         matrix_tuple(x2, transposed=True), ops.bias_ptr, ops.bias_dtype, ops.c, stream_of(values))
        return
    # The raw op has no place to keep a decompressed weight: it decompresses on every call.
    # sparsecore.NM objects keep the dense form once (NM.dense_for) and never come here.
    out.copy_(dense_fallback(dense, nm_to_dense(values, bitmap, n_cols).float(), bias, linear))


def dense_fallback(dense: torch.Tensor, w32: torch.Tensor, bias, linear: bool) -> torch.Tensor:
    """``x @ W.T + bias`` (``linear``) or ``W @ B`` on cuBLAS with the kernels' contract: fp32
    inputs and accumulation (a bf16/fp16 cuBLAS GEMM may reduce split-K partial sums in
    half precision, torch's default), the NaN rule (a non-finite row of x, column of B, gives
    a NaN row, column, even where W is zero), the result in ``dense``'s dtype."""
    x32 = dense.float()
    if linear:
        y = torch.nn.functional.linear(x32, w32, None if bias is None else bias.float())
        bad = ~torch.isfinite(x32).all(dim=-1, keepdim=True)
    else:
        y = w32 @ x32
        bad = ~torch.isfinite(x32).all(dim=0, keepdim=True)
    return y.masked_fill(bad, float("nan")).to(dense.dtype)


register_matmul("nm", check_nm_parts, _nm_launch, devices=("cpu", "cuda"))

"""Mapping between torch dtypes and the kernel type codes (csrc/include/sparsecore/dtypes.h)."""

from __future__ import annotations

import torch

VALUE_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_DTYPE_CODE = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
INDEX_UINT16 = 0  # stored in a torch.int16 tensor, read as uint16 by the kernels
INDEX_INT32 = 1


def dtype_code(dtype: torch.dtype, what: str) -> int:
    try:
        return _DTYPE_CODE[dtype]
    except KeyError:
        raise TypeError(f"{what}: dtype {dtype} is not supported (expected float32, bfloat16 or float16)") from None


def index_code(t: torch.Tensor) -> int:
    if t.dtype == torch.int16:
        return INDEX_UINT16
    if t.dtype == torch.int32:
        return INDEX_INT32
    raise TypeError(f"column indices must be int16 (read as uint16) or int32, got {t.dtype}")


def compact_index_dtype(cols: int) -> torch.dtype:
    """The narrowest index type the kernels read for a matrix with ``cols`` columns."""
    return torch.int16 if cols <= 65536 else torch.int32


def indices_to_int64(t: torch.Tensor) -> torch.Tensor:
    """Column indices as int64, undoing the uint16-in-int16 storage."""
    out = t.to(torch.int64)
    return out & 0xFFFF if t.dtype == torch.int16 else out


def matrix_tuple(t: torch.Tensor, transposed: bool = False) -> tuple:
    """(data_ptr, rows, cols, row_stride, col_stride, dtype) of a 2-D tensor, or of its transpose."""
    rows, cols = t.shape
    rs, cs = t.stride()
    code = dtype_code(t.dtype, "dense operand")
    if transposed:
        return (t.data_ptr(), cols, rows, cs, rs, code)
    return (t.data_ptr(), rows, cols, rs, cs, code)

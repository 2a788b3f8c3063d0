"""Argument checks shared by the sparse formats: every bad input gets an exception that names it."""

from __future__ import annotations

import torch

from .._dtypes import VALUE_DTYPES


def check_tensor(t, name: str, ndim: int | None = None) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(t.shape)}")
    return t


def check_values_dtype(dtype: torch.dtype, name: str) -> None:
    if dtype not in VALUE_DTYPES:
        raise TypeError(f"{name}: dtype {dtype} is not supported (expected float32, bfloat16 or float16)")


def check_finite(t: torch.Tensor, name: str) -> None:
    if t.numel() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or Inf")


def check_same_device(tensors: dict) -> torch.device:
    devices = {name: t.device for name, t in tensors.items()}
    first = next(iter(devices.values()))
    for name, dev in devices.items():
        if dev != first:
            raise ValueError(f"all parts of a sparse matrix must be on one device: {name} is on {dev}, not {first}")
    return first


def check_shape(shape, name: str = "shape") -> tuple[int, int]:
    if len(shape) != 2:
        raise ValueError(f"{name} must have 2 dimensions, got {tuple(shape)}")
    rows, cols = (int(s) for s in shape)
    if rows < 0 or cols < 0:
        raise ValueError(f"{name} must be non-negative, got {(rows, cols)}")
    return rows, cols


def check_compressed_parts(row_ptr, col_idx, values, values_ndim: int) -> torch.device:
    """Types, dtypes and devices of the three arrays of CSR / BSR; returns their device."""
    from .._dtypes import index_code

    check_tensor(row_ptr, "row_ptr", 1)
    check_tensor(col_idx, "col_idx", 1)
    check_tensor(values, "values", values_ndim)
    if row_ptr.dtype != torch.int64:
        raise TypeError(f"row_ptr must be int64, got {row_ptr.dtype}")
    index_code(col_idx)
    check_values_dtype(values.dtype, "values")
    return check_same_device({"row_ptr": row_ptr, "col_idx": col_idx, "values": values})


def compact_indices(idx, count: int, what: str, index_dtype: torch.dtype | None = None):
    """int64 (or any integer) indices -> the kernels' compact form (int16 read as uint16
    when ``count`` <= 65536, else int32), after checking every index is in [0, count).
    int16 / int32 indices without ``index_dtype`` are returned as they are."""
    from .._dtypes import compact_index_dtype

    if not isinstance(idx, torch.Tensor) or (idx.dtype in (torch.int16, torch.int32) and index_dtype is None):
        return idx
    if idx.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise TypeError(f"{what} indices must be an integer tensor, got {idx.dtype}")
    if idx.dtype == torch.int16:
        idx = idx.to(torch.int64) & 0xFFFF
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= count):
        raise ValueError(f"{what} index out of range [0, {count}): min {int(idx.min())}, max {int(idx.max())}")
    target = index_dtype or compact_index_dtype(count)
    if target not in (torch.int16, torch.int32):
        raise TypeError(f"index_dtype must be torch.int16 or torch.int32, got {target}")
    return idx.to(torch.int32).to(target)


def check_index_space(col_idx: torch.Tensor, count: int, what: str) -> None:
    if col_idx.dtype == torch.int16 and count > 65536:
        raise ValueError(f"int16 (uint16) indices cannot address {count} {what}; use int32")


def plan_chunks(row_ptr_cpu: torch.Tensor, rows: int, row_cost: int) -> torch.Tensor:
    """The plan's nnz-balanced row partition: enough chunks for any thread count to balance dynamically."""
    import os

    from .._native import _C

    num = max(1, min(rows, 8 * (os.cpu_count() or 1)))
    chunks = torch.empty(num + 1, dtype=torch.int64)
    _C.plan_row_chunks(row_ptr_cpu.data_ptr(), rows, row_cost, num, chunks.data_ptr())
    return chunks

"""Packing of a weight into the activation-sparse kernel's layouts, and the plain-torch
reference of the product. The op itself lives in :mod:`sparsecore.ops.act`."""

from __future__ import annotations

import torch

from .._bits import unpack_bits
from .._dtypes import dtype_code, matrix_tuple
from .._native import _C
from ..ops.act import ACT_VALUE_PAD, act_sparse_linear, out_padded  # noqa: F401  (act_sparse_linear re-exported)

# Weights from this size on ask for transparent huge pages (fewer TLB misses between runs).
_HUGE_PAGE_MIN_BYTES = 4 << 20

def pack_weight(weight: torch.Tensor) -> torch.Tensor:
    """The kernel layout of a dense ``weight`` (out x in): ``W.T`` with out padded to 32, zeros after."""
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D (out_features x in_features), got shape {tuple(weight.shape)}")
    dtype_code(weight.dtype, "weight")
    out, in_ = weight.shape
    packed = torch.empty(in_, out_padded(out), dtype=weight.dtype, device=weight.device)
    if packed.device.type == "cpu" and packed.numel() * packed.element_size() >= _HUGE_PAGE_MIN_BYTES:
        _C.advise_huge_pages(packed.data_ptr(), packed.numel() * packed.element_size())  # before the first write
    packed[:, out:] = 0
    packed[:, :out] = weight.detach().t()
    return packed


def unpack_weight(packed: torch.Tensor, out_features: int) -> torch.Tensor:
    """The dense (out x in) weight back from :func:`pack_weight`'s layout."""
    return packed[:, :out_features].t().contiguous()


def pack_weight_sparse(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A pruned ``weight`` (out x in, CPU) as weight-sparse runs: ``(values, bitmap, offsets)``.

    Run j keeps only the nonzeros of ``W[:, j]`` plus one bit per output, so activation
    sparsity (skipped runs) and weight sparsity (short runs) both cut the bytes read.
    """
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D (out_features x in_features), got shape {tuple(weight.shape)}")
    if weight.device.type != "cpu":
        raise ValueError("weight-sparse runs are packed on the CPU")
    dtype_code(weight.dtype, "weight")
    w = weight.detach()
    out, in_ = w.shape
    count = _C.act_bitmap_values(matrix_tuple(w))
    values = torch.empty(count + ACT_VALUE_PAD, dtype=w.dtype)
    if values.numel() * values.element_size() >= _HUGE_PAGE_MIN_BYTES:
        _C.advise_huge_pages(values.data_ptr(), values.numel() * values.element_size())
    bitmap = torch.empty(in_ * _C.act_bitmap_row_bytes(out) + 2, dtype=torch.uint8)
    offsets = torch.empty(in_ * _C.act_offset_slots(out), dtype=torch.int64)
    _C.act_pack_bitmap(matrix_tuple(w), bitmap.data_ptr(), offsets.data_ptr(), values.data_ptr())
    return values, bitmap, offsets


def unpack_weight_sparse(values: torch.Tensor, bitmap: torch.Tensor, out_features: int,
                         in_features: int) -> torch.Tensor:
    """The dense (out x in) weight back from :func:`pack_weight_sparse`'s layout."""
    row_bytes = _C.act_bitmap_row_bytes(out_features)
    bits = bitmap[: in_features * row_bytes].view(in_features, row_bytes).cpu()
    mask = unpack_bits(bits, row_bytes * 8)
    dense = torch.zeros(in_features, row_bytes * 8, dtype=values.dtype)
    dense[mask] = values[: int(mask.sum())].cpu()
    return dense[:, :out_features].t().contiguous().to(values.device)


def reference_act_linear(x: torch.Tensor, weight: torch.Tensor, threshold: float, *,
                         scale: torch.Tensor | None = None, bias: torch.Tensor | None = None,
                         complement: bool = False) -> torch.Tensor:
    """The same product in plain torch (float64 accumulation): the tests' oracle and the path
    for devices and dtypes the kernels do not cover."""
    xd = x.to(torch.float64)
    score = xd.abs() * (scale.to(torch.float64) if scale is not None else 1.0)
    big = ~(score <= threshold)  # NaN / Inf stay active
    keep = ~big if complement else big
    y = (xd * keep) @ weight.to(torch.float64).t()
    if bias is not None:
        y = y + bias.to(torch.float64)
    return y.to(x.dtype)

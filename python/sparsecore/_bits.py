"""The one bit layout of every sparsecore bitmap (N:M, the CSR plan, weight-sparse runs,
compressed files): bit ``l`` of byte ``q`` of a row is column ``8q + l`` (little bit order),
rows padded with zero bits to a whole number of bytes."""

from __future__ import annotations

import torch


def pack_bits(bits: torch.Tensor, row_bytes: int | None = None) -> torch.Tensor:
    """(rows, cols) bool -> (rows, row_bytes) uint8; row_bytes defaults to ceil(cols / 8)."""
    rows, cols = bits.shape
    row_bytes = (cols + 7) // 8 if row_bytes is None else int(row_bytes)
    if row_bytes * 8 < cols:
        raise ValueError(f"{row_bytes} bytes per row cannot hold {cols} columns")
    padded = torch.zeros(rows, row_bytes * 8, dtype=torch.uint8, device=bits.device)
    padded[:, :cols] = bits.to(torch.uint8)
    weights = (2 ** torch.arange(8, device=bits.device, dtype=torch.int32)).to(torch.uint8)
    return (padded.reshape(rows, row_bytes, 8) * weights).sum(-1, dtype=torch.int32).to(torch.uint8)


def unpack_bits(bitmap: torch.Tensor, cols: int) -> torch.Tensor:
    """(rows, row_bytes) uint8 -> (rows, cols) bool, the inverse of :func:`pack_bits`."""
    shifts = torch.arange(8, device=bitmap.device, dtype=torch.uint8)
    bits = (bitmap.unsqueeze(-1) >> shifts) & 1
    return bits.reshape(bitmap.shape[0], bitmap.shape[1] * 8)[:, :cols].bool()


def row_counts(bitmap: torch.Tensor, cols: int) -> torch.Tensor:
    """Set bits per row among the first ``cols`` columns (int64)."""
    return unpack_bits(bitmap, cols).sum(dim=1, dtype=torch.int64)

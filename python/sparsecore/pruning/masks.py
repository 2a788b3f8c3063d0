"""Pruning masks from scores: unstructured (per row or per tensor), N:M and block.

Every function takes a score tensor (larger = more important; for magnitude pruning the
score is ``|W|``) and returns a boolean keep-mask of the same shape. Ties are broken
deterministically: among equal scores the entry with the lower flat index is pruned
first, so the same weights always give the same mask (weights dequantized from 4-bit
formats tie often).

Examples
--------
>>> import torch
>>> from sparsecore.pruning import unstructured_mask, nm_mask
>>> w = torch.tensor([[1.0, -3.0, 2.0, 0.5]])
>>> unstructured_mask(w.abs(), 0.5).tolist()
[[False, True, True, False]]
>>> nm_mask(w.abs(), 2, 4).tolist()
[[False, True, True, False]]
"""

from __future__ import annotations

import math

import torch


def _check_sparsity(sparsity: float) -> float:
    s = float(sparsity)
    if not (0.0 <= s <= 1.0) or math.isnan(s):
        raise ValueError(f"sparsity must be a number in [0, 1], got {sparsity!r}")
    return s


def _check_scores(scores: torch.Tensor, ndim: int | None = 2) -> None:
    if not isinstance(scores, torch.Tensor):
        raise TypeError(f"scores must be a torch.Tensor, got {type(scores).__name__}")
    if ndim is not None and scores.dim() != ndim:
        raise ValueError(f"scores must be {ndim}-D, got shape {tuple(scores.shape)}")
    if not scores.dtype.is_floating_point:
        raise TypeError(f"scores must be floating point, got {scores.dtype}")
    if scores.numel() and not bool(torch.isfinite(scores).all()):
        raise ValueError("scores contain NaN or Inf")


def _prune_lowest(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Keep-mask over the last dim pruning the `count` lowest entries of every row (stable order)."""
    order = torch.sort(scores, dim=-1, stable=True).indices
    keep = torch.ones_like(scores, dtype=torch.bool)
    if count > 0:
        keep.scatter_(-1, order[..., :count], False)
    return keep


def _count(sparsity: float, n: int) -> int:
    return int(math.floor(sparsity * n + 0.5))


def unstructured_mask(scores: torch.Tensor, sparsity: float, *, per_row: bool = True) -> torch.Tensor:
    """Prune the ``sparsity`` fraction of lowest scores, per output row (default) or over the whole tensor."""
    _check_scores(scores)
    s = _check_sparsity(sparsity)
    if per_row:
        return _prune_lowest(scores, _count(s, scores.shape[1]))
    flat = scores.reshape(1, -1)
    return _prune_lowest(flat, _count(s, flat.shape[1])).reshape(scores.shape)


def magnitude_mask(weight: torch.Tensor, sparsity: float, *, per_row: bool = True) -> torch.Tensor:
    """Unstructured magnitude pruning: keep the largest ``|weight|``."""
    return unstructured_mask(weight.detach().abs().float(), sparsity, per_row=per_row)


def topk_mask(scores: torch.Tensor, k: int, *, per_row: bool = True) -> torch.Tensor:
    """Keep exactly ``k`` entries per row (or in the tensor): the ``k`` highest scores."""
    _check_scores(scores)
    total = scores.shape[1] if per_row else scores.numel()
    if not (0 <= int(k) <= total):
        raise ValueError(f"k must be in [0, {total}], got {k}")
    if per_row:
        return _prune_lowest(scores, total - int(k))
    return _prune_lowest(scores.reshape(1, -1), total - int(k)).reshape(scores.shape)


def nm_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """N:M semi-structured mask: in every group of ``m`` consecutive inputs keep the ``n`` highest."""
    _check_scores(scores)
    n, m = int(n), int(m)
    if not (m >= 1 and 0 < n <= m):
        raise ValueError(f"N:M needs 0 < N <= M, got {n}:{m}")
    rows, cols = scores.shape
    if cols % m:
        raise ValueError(f"N:M with M = {m} needs the input dimension ({cols}) to be a multiple of {m}")
    groups = scores.reshape(rows, cols // m, m)
    return _prune_lowest(groups, m - n).reshape(rows, cols)


def block_mask(scores: torch.Tensor, block: tuple[int, int], sparsity: float, *, per_block_row: bool = False
               ) -> torch.Tensor:
    """Prune whole ``block`` tiles (scored by the sum of their scores); returns the element mask.

    ``per_block_row`` prunes the same fraction in every row of blocks (even work per row);
    otherwise the lowest blocks of the whole tensor go.
    """
    _check_scores(scores)
    s = _check_sparsity(sparsity)
    bh, bw = (int(b) for b in block)
    rows, cols = scores.shape
    if bh < 1 or bw < 1 or rows % bh or cols % bw:
        raise ValueError(f"shape {(rows, cols)} is not a multiple of the block shape {bh}x{bw}")
    block_scores = scores.reshape(rows // bh, bh, cols // bw, bw).sum(dim=(1, 3))
    keep = unstructured_mask(block_scores, s, per_row=per_block_row)
    return keep.repeat_interleave(bh, 0).repeat_interleave(bw, 1)


def sparsity_of(mask: torch.Tensor) -> float:
    """Fraction of pruned (False) entries."""
    return 1.0 - float(mask.float().mean()) if mask.numel() else 0.0

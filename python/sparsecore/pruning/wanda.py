"""Wanda (Sun et al., 2023): prune by |W_ij| * ||X_j||_2, compared within each output row."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from .calibration import InputStats
from .pattern import Pattern
from .prune import prune_model_, sparsity_report


def wanda_scores(weight: torch.Tensor, input_norms: torch.Tensor) -> torch.Tensor:
    """|W| scaled by the L2 norm of each input channel over the calibration tokens."""
    if input_norms.shape != (weight.shape[1],):
        raise ValueError(f"input_norms must have {weight.shape[1]} entries, got shape {tuple(input_norms.shape)}")
    return weight.detach().abs().double() * input_norms.to(torch.float64).reshape(1, -1)


def wanda_mask(weight: torch.Tensor, stats: InputStats, *, sparsity: float | None = None,
               nm: tuple[int, int] | None = None) -> torch.Tensor:
    """Keep-mask: per-row unstructured at ``sparsity``, or N:M when ``nm=(n, m)``."""
    if (sparsity is None) == (nm is None):
        raise ValueError("give exactly one of sparsity or nm")
    pattern = Pattern(nm=nm) if nm is not None else Pattern(sparsity=sparsity)
    return pattern.mask(wanda_scores(weight, stats.norms))


def _pattern(sparsity, nm, pattern) -> Pattern:
    if pattern is not None:
        return pattern
    if nm is not None:
        return Pattern(nm=nm)
    if sparsity is None:
        raise ValueError("give sparsity, nm or pattern")
    return Pattern(sparsity=sparsity)


def wanda_prune_(model: nn.Module, blocks: list[nn.Module], calibration: Iterable, *,
                 sparsity: float | None = 0.5, nm: tuple[int, int] | None = None, pattern: Pattern | None = None,
                 allocation: str = "uniform", filter_fn=None, progress: bool = True) -> dict[str, float]:
    """Prune the linear layers of ``blocks`` (in model order) with Wanda, in place.

    ``calibration`` yields model inputs (token-id tensors, or dicts of keyword arguments);
    statistics for block i come from activations that already passed the pruned blocks
    0..i-1, as in the paper. ``filter_fn(name, linear)`` may exclude layers. Returns the
    sparsity reached per layer.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from sparsecore.pruning import wanda_prune_
    >>> blocks = [nn.Sequential(nn.Linear(16, 16), nn.ReLU()) for _ in range(2)]
    >>> model = nn.Sequential(*blocks)
    >>> report = wanda_prune_(model, blocks, [torch.randn(4, 16)], sparsity=0.5, progress=False)
    >>> sorted(round(v, 2) for v in report.values())
    [0.5, 0.5]
    """
    select = None if filter_fn is None else (lambda _b, name, mod: filter_fn(name, mod))
    masks = prune_model_(model, blocks, calibration, method="wanda", pattern=_pattern(sparsity, nm, pattern),
                         allocation=allocation, select=select, progress=progress)
    return sparsity_report(masks)


def sparsegpt_prune_(model: nn.Module, blocks: list[nn.Module], calibration: Iterable, *,
                     sparsity: float | None = 0.5, nm: tuple[int, int] | None = None, pattern: Pattern | None = None,
                     allocation: str = "uniform", lazy_batch: int = 128, damp: float = 0.01, filter_fn=None,
                     progress: bool = True) -> dict[str, float]:
    """Prune the linear layers of ``blocks`` with SparseGPT, in place (same calling convention as
    :func:`wanda_prune_`); returns the sparsity reached per layer."""
    select = None if filter_fn is None else (lambda _b, name, mod: filter_fn(name, mod))
    masks = prune_model_(model, blocks, calibration, method="sparsegpt", pattern=_pattern(sparsity, nm, pattern),
                         allocation=allocation, select=select, lazy_batch=lazy_batch, damp=damp, progress=progress)
    return sparsity_report(masks)

"""Wanda (Sun et al., 2023): prune by |W_ij| * ||X_j||_2, compared within each output row."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from .calibration import InputStats, capture_block_inputs, prune_blockwise
from .masks import nm_mask, unstructured_mask


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
    scores = wanda_scores(weight, stats.norms)
    return nm_mask(scores, *nm) if nm is not None else unstructured_mask(scores, sparsity)


def wanda_prune_(model: nn.Module, blocks: list[nn.Module], calibration: Iterable, *,
                 sparsity: float | None = 0.5, nm: tuple[int, int] | None = None,
                 filter_fn=None, progress: bool = True) -> dict[str, float]:
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
    if nm is None and sparsity is None:
        raise ValueError("give sparsity or nm")
    if nm is not None:
        sparsity = None
        # Check every layer before touching any: a late misfit must not leave a half-pruned model.
        for block in blocks:
            for name, mod in block.named_modules():
                if isinstance(mod, nn.Linear) and (filter_fn is None or filter_fn(name, mod)) \
                        and mod.in_features % nm[1]:
                    raise ValueError(f"N:M with M = {nm[1]} needs {name}'s input dimension ({mod.in_features}) "
                                     f"to be a multiple of {nm[1]}")
    inputs = capture_block_inputs(model, blocks[0], calibration)

    def make_mask(name: str, linear: nn.Linear, stats: InputStats) -> torch.Tensor:
        if filter_fn is not None and not filter_fn(name, linear):
            return torch.ones_like(linear.weight, dtype=torch.bool)
        return wanda_mask(linear.weight, stats, sparsity=sparsity, nm=nm)

    return prune_blockwise(blocks, inputs, make_mask, progress=progress)

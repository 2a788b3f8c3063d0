"""One driver for every pruning method, layer by layer as the papers do it.

``prune_model_`` captures the first block's calibration inputs, optionally allocates
per-block sparsity with OWL (on the dense model), then prunes block after block with
statistics gathered on activations that already passed the pruned upstream blocks. All
shape checks run before any weight changes.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn

from .calibration import InputStats, capture_block_inputs, prune_blockwise
from .masks import magnitude_mask
from .owl import owl_allocation
from .pattern import Pattern
from .sparsegpt import HessianStats, sparsegpt_prune_weight

METHODS = ("magnitude", "wanda", "sparsegpt")
ALLOCATIONS = ("uniform", "owl")


def _wanda_layer(pattern: Pattern):
    def prune(_b, _name, linear: nn.Linear, stats: InputStats):
        scores = linear.weight.detach().abs().double() * stats.norms.reshape(1, -1)
        mask = pattern.mask(scores)
        return linear.weight.detach() * mask.to(linear.weight.dtype), mask
    return prune


def _magnitude_layer(pattern: Pattern):
    def prune(_b, _name, linear: nn.Linear, _stats):
        w = linear.weight.detach()
        mask = magnitude_mask(w, pattern.sparsity) if pattern.nm is None and pattern.block is None \
            else pattern.mask(w.abs().float())
        return w * mask.to(w.dtype), mask
    return prune


def _sparsegpt_layer(pattern: Pattern, lazy_batch: int, damp: float):
    def prune(_b, _name, linear: nn.Linear, stats: HessianStats):
        return sparsegpt_prune_weight(linear.weight, stats.hessian, pattern, lazy_batch=lazy_batch, damp=damp)
    return prune


class _NoStats:
    def update(self, _x) -> None:
        return None


def prune_model_(model: nn.Module, blocks: list[nn.Module], calibration: Iterable | None, *,
                 method: str = "wanda", pattern: Pattern = Pattern(0.5), allocation: str = "uniform",
                 select: Callable[[int, str, nn.Linear], bool] | None = None,
                 lazy_batch: int = 128, damp: float = 0.01, owl_m: float = 5.0, owl_lambda: float = 0.08,
                 progress: bool = True) -> dict[tuple[int, str], torch.Tensor]:
    """Prune the linear layers of ``blocks`` in place; returns their keep-masks keyed ``(block, name)``.

    ``calibration`` yields model inputs (token-id tensors or dicts of keyword arguments); it
    may be None only for uniform magnitude pruning. ``select(block, name, linear)`` may
    exclude layers (they stay dense and unchanged).
    """
    if method not in METHODS:
        raise ValueError(f"unknown pruning method {method!r}; choose one of {', '.join(METHODS)}")
    if allocation not in ALLOCATIONS:
        raise ValueError(f"unknown sparsity allocation {allocation!r}; choose one of {', '.join(ALLOCATIONS)}")
    if allocation == "owl" and (pattern.nm is not None):
        raise ValueError("OWL allocates unstructured or block sparsity per layer; N:M has a fixed ratio")
    if not blocks:
        raise ValueError("no blocks to prune")
    chosen = [(b, name, mod) for b, block in enumerate(blocks) for name, mod in block.named_modules()
              if isinstance(mod, nn.Linear) and (select is None or select(b, name, mod))]
    if not chosen:
        raise ValueError("the blocks contain no nn.Linear layer to prune (other layer types, such as GPT-2's "
                         "Conv1D, are not supported)")
    for b, name, mod in chosen:
        pattern.check(f"block {b} {name}", tuple(mod.weight.shape))
    if method == "magnitude" and allocation == "uniform":
        masks = {}
        prune = _magnitude_layer(pattern)
        with torch.no_grad():
            for b, name, mod in chosen:
                weight, masks[(b, name)] = prune(b, name, mod, None)
                mod.weight.copy_(weight)
        return masks
    if calibration is None:
        raise ValueError(f"{method} pruning with {allocation} allocation needs calibration data")
    inputs = capture_block_inputs(model, blocks[0], calibration)
    per_block = [pattern] * len(blocks)
    if allocation == "owl":
        sparsities = owl_allocation(blocks, inputs, pattern.sparsity, select=select, m=owl_m, lam=owl_lambda,
                                    progress=progress)
        per_block = [pattern.with_sparsity(s) for s in sparsities]
    makers = {
        "magnitude": (lambda lin: _NoStats(), lambda p: _magnitude_layer(p)),
        "wanda": (lambda lin: InputStats(lin.in_features), lambda p: _wanda_layer(p)),
        "sparsegpt": (lambda lin: HessianStats(lin.in_features), lambda p: _sparsegpt_layer(p, lazy_batch, damp)),
    }
    make_stats, make_pruner = makers[method]
    pruners = [make_pruner(p) for p in per_block]
    return prune_blockwise(blocks, inputs, make_stats, lambda b, name, lin, st: pruners[b](b, name, lin, st),
                           select=select, progress=progress)


def sparsity_report(masks: dict[tuple[int, str], torch.Tensor]) -> dict[str, float]:
    """``{"block.b/name": sparsity}`` for the masks ``prune_model_`` returned."""
    return {f"block.{b}/{name}": 1.0 - float(m.float().mean()) for (b, name), m in masks.items()}

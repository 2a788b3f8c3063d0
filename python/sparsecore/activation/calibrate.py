"""Calibration for activation sparsity: score histograms of every layer input on real text,
and TEAL's block-wise greedy allocation of sparsity across a block's projections.

Projections that read the same input share one sparsity level (TEAL's grouping): q/k/v,
gate/up; o_proj and down_proj each have their own. Other linears form one group each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import torch
from torch import nn

from ..models.blocks import find_blocks
from ..pruning.calibration import _block_output, _with_hidden, capture_block_inputs
from .histogram import ScoreHistogram
from .linear import dense_weight

GROUP_OF = {"q_proj": "qkv", "k_proj": "qkv", "v_proj": "qkv", "o_proj": "o",
            "gate_proj": "gate_up", "up_proj": "gate_up", "down_proj": "down"}


def group_of(name: str) -> str:
    """The sharing group of a linear from its name inside a block."""
    leaf = name.rsplit(".", 1)[-1]
    return GROUP_OF.get(leaf, name)


def column_norms(linear: nn.Module) -> torch.Tensor:
    """||W[:, j]||_2 per input channel (float32): WINA's and R-Sparse's channel weights."""
    return dense_weight(linear).to(torch.float32).norm(dim=0)


def input_scores(x: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    s = x.detach().abs().to(torch.float32)
    return s * scale.to(s.device) if scale is not None else s


def keep_mask(x: torch.Tensor, threshold: float, scale: torch.Tensor | None) -> torch.Tensor:
    """The kernel's selection rule in torch: score above the threshold, or not finite."""
    return ~(input_scores(x, scale) <= threshold)


@dataclass
class LayerStats:
    """One target linear: its histogram of input scores and its channel scale."""

    name: str
    linear: nn.Linear
    scale: torch.Tensor | None
    histogram: ScoreHistogram = field(default_factory=ScoreHistogram)

    @property
    def params(self) -> int:
        return self.linear.in_features * self.linear.out_features


def collect_histograms(model: nn.Module, batches: Iterable, targets: dict[str, nn.Linear], weighted: bool,
                       progress: bool = True) -> dict[str, LayerStats]:
    """Run ``model`` over the calibration batches and histogram every target's input scores
    (``|x|``, or ``|x| * ||W[:, j]||`` when ``weighted``)."""
    from tqdm.auto import tqdm

    stats = {name: LayerStats(name, lin, column_norms(lin) if weighted else None) for name, lin in targets.items()}
    handles = [lin.register_forward_pre_hook(lambda _m, args, s=stats[name]: s.histogram.update(
        input_scores(args[0], s.scale))) for name, lin in targets.items()]
    try:
        with torch.no_grad():
            for batch in tqdm(list(batches), desc="calibrating activations", disable=not progress):
                model(**batch) if isinstance(batch, dict) else model(batch)
    finally:
        for h in handles:
            h.remove()
    for s in stats.values():
        if s.histogram.total == 0:
            raise ValueError(f"no calibration data reached layer {s.name!r}")
    return stats


class _MaskInputs:
    """Forward pre-hooks that zero each linear's dropped input channels (the reference path)."""

    def __init__(self, stats: dict[str, LayerStats], thresholds: dict[str, float]):
        self.handles = [s.linear.register_forward_pre_hook(
            lambda _m, args, s=s, t=thresholds[name]: (args[0] * keep_mask(args[0], t, s.scale),) + args[1:])
            for name, s in stats.items() if name in thresholds]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()


def _block_error(block: nn.Module, inputs: list, dense_out: list, stats: dict[str, LayerStats],
                 thresholds: dict[str, float]) -> float:
    num = den = 0.0
    with torch.no_grad(), _MaskInputs(stats, thresholds):
        for (args, kwargs), ref in zip(inputs, dense_out):
            out = _block_output(block(*args, **kwargs)).to(torch.float64)
            num += float((out - ref).pow(2).sum())
            den += float(ref.pow(2).sum())
    return num / max(den, 1e-300)


def greedy_levels(block: nn.Module, inputs: list, stats: dict[str, LayerStats], targets: list[float],
                  step: float, max_level: float = 0.95) -> dict[float, dict[str, float]]:
    """TEAL's greedy allocation inside one block.

    Starting dense, repeatedly raise by ``step`` the sparsity of the one group whose raise
    increases the block's output error least per parameter it adds to the budget, until
    the parameter-weighted sparsity of the
    block reaches the largest target. Returns, for each target, the levels (per linear) of
    the first point on that path that reaches it, with the last raise trimmed so that the
    block's parameter-weighted sparsity is exactly the target.
    """
    with torch.no_grad():
        dense_out = [_block_output(block(*a, **k)).to(torch.float64) for a, k in inputs]
    groups: dict[str, list[str]] = {}
    for name in stats:
        groups.setdefault(group_of(name), []).append(name)
    params = {g: sum(stats[n].params for n in names) for g, names in groups.items()}
    total = sum(params.values())
    cache: dict[tuple[str, float], float] = {}

    def thresholds_for(levels: dict[str, float]) -> dict[str, float]:
        out = {}
        for g, names in groups.items():
            for n in names:
                key = (n, round(levels[g], 6))
                if key not in cache:
                    cache[key] = stats[n].histogram.threshold(levels[g])
                out[n] = cache[key]
        return out

    def per_linear(levels: dict[str, float]) -> dict[str, float]:
        return {n: levels[g] for g, names in groups.items() for n in names}

    levels = {g: 0.0 for g in groups}
    error = 0.0
    last = None  # the group the last step raised
    reached: dict[float, dict[str, float]] = {}
    pending = sorted(targets)
    while pending:
        average = sum(levels[g] * params[g] for g in groups) / total
        while pending and average >= pending[0] - 1e-9:
            # The last step overshot by up to step * its group's share: give the excess
            # back on that group, so the block sits exactly on the target.
            exact = dict(levels)
            if last is not None:
                exact[last] = max(0.0, levels[last] - (average - pending[0]) * total / params[last])
            reached[pending.pop(0)] = per_linear(exact)
        if not pending:
            break
        # The raise that costs the least error per parameter it sparsifies: a step on
        # gate/up buys four times the budget of a step on o_proj.
        best = None
        previous = levels
        for g in groups:
            if levels[g] + step > max_level + 1e-9:
                continue
            trial = {**levels, g: levels[g] + step}
            err = _block_error(block, inputs, dense_out, stats, thresholds_for(trial))
            cost = (err - error) / params[g]
            if best is None or cost < best[0]:
                best = (cost, err, trial)
        if best is None:
            raise ValueError(f"cannot reach block sparsity {pending[0]:.2f} with every group at most {max_level}")
        _, error, levels = best
        last = max(groups, key=lambda g: levels[g] - previous[g])
    return reached


def greedy_allocation(model: nn.Module, batches: list, stats: dict[str, LayerStats], targets: list[float],
                      step: float = 0.05, progress: bool = True) -> dict[float, dict[str, float]]:
    """Per-linear sparsity levels for each model-wide target, block by block on the dense
    model's activations (each block's targets met in parameter-weighted average)."""
    from tqdm.auto import tqdm

    prefix, blocks = find_blocks(model)
    inputs = capture_block_inputs(model, blocks[0], batches)
    result: dict[float, dict[str, float]] = {t: {} for t in targets}
    for b, block in enumerate(tqdm(blocks, desc="greedy allocation", disable=not progress)):
        here = {name: s for name, s in stats.items() if name.startswith(f"{prefix}.{b}.")}
        if here:
            local = {name[len(f"{prefix}.{b}."):]: s for name, s in here.items()}
            for t, levels in greedy_levels(block, inputs, local, targets, step).items():
                result[t].update({f"{prefix}.{b}.{n}": v for n, v in levels.items()})
        with torch.no_grad():
            inputs = [_with_hidden(a, k, _block_output(block(*a, **k))) for a, k in inputs]
    missing = set(stats) - set(result[targets[0]]) if targets else set()
    for t in targets:  # linears outside the blocks: the uniform level
        for name in missing:
            result[t][name] = t
    return result


def model_sparsity(levels: dict[str, float], stats: dict[str, LayerStats]) -> float:
    """Parameter-weighted average sparsity of a per-linear allocation."""
    total = sum(stats[n].params for n in levels)
    return sum(levels[n] * stats[n].params for n in levels) / max(total, 1)


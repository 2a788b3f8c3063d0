"""R-Sparse (rank-aware activation sparsity): the important input channels of a linear go
through the exact weight, the rest through a rank-r approximation of it:

    y = W (x * m) + U_r S_r V_r^T (x * (1 - m)),    m_j = |x_j| * ||W[:, j]|| > t.

Budget of a layer at compute sparsity s with split alpha: channels = in * (1 - s) * alpha
exact channels and rank r = (in * out * (1 - s) - channels * out) / (in + out), so the
layer reads about (1 - s) of its weight's bytes whatever alpha is. The per-layer (s, alpha)
(one pair per block and TEAL group: q/k/v, o, gate/up, down) are found by an evolutionary
search under the model-wide budget (parameter-weighted mean of s = target), with the
calibration loss as fitness.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..models.blocks import find_blocks
from .calibrate import LayerStats, group_of, keep_mask
from .linear import dense_weight


@dataclass(frozen=True)
class LayerBudget:
    sparsity: float
    alpha: float
    channels: int
    rank: int
    keep_fraction: float  # fraction of channels on the exact path


def layer_budget(out_f: int, in_f: int, sparsity: float, alpha: float) -> LayerBudget:
    """The paper's per-layer split of a compute budget between exact channels and rank."""
    if not 0.0 <= sparsity < 1.0 or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"R-Sparse needs 0 <= s < 1 and 0 <= alpha <= 1, got s={sparsity}, alpha={alpha}")
    channels = int(round(in_f * (1.0 - sparsity) * alpha))
    rank = int((in_f * out_f * (1.0 - sparsity) - channels * out_f) // (in_f + out_f))
    rank = max(0, min(rank, min(out_f, in_f)))
    return LayerBudget(sparsity, alpha, channels, rank, channels / in_f)


class LayerSVD:
    """W = U S V^T of one linear (float32, CPU), computed once; slices give any rank."""

    def __init__(self, linear: nn.Linear):
        u, s, vh = torch.linalg.svd(dense_weight(linear).to(torch.float32).cpu(), full_matrices=False)
        self.us = u * s
        self.vh = vh

    def factors(self, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(V_r^T: r x in, U_r S_r: out x r)."""
        return self.vh[:rank].contiguous(), self.us[:, :rank].contiguous()


def _threshold(stats: LayerStats, keep_fraction: float) -> float:
    return stats.histogram.threshold(min(max(1.0 - keep_fraction, 0.0), 0.999999))


class _RSparseHooks:
    """Forward hooks that replace each linear's output by its R-Sparse form (reference path)."""

    def __init__(self, plan: dict[str, tuple[LayerStats, float, torch.Tensor, torch.Tensor]]):
        def hook(module, args, _out, stats, t, down, up):
            x = args[0]
            dense = dense_weight(module).to(x.dtype)
            keep = keep_mask(x, t, stats.scale)
            y = nn.functional.linear(x * keep, dense, module.bias)
            if down.shape[0]:
                z = (x * ~keep).to(torch.float32) @ down.t()
                y = y + (z @ up.t()).to(y.dtype)
            return y

        self.handles = [s.linear.register_forward_hook(
            lambda m, a, o, s=s, t=t, d=d, u=u: hook(m, a, o, s, t, d, u)) for s, t, d, u in plan.values()]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()


def search_units(stats: dict[str, LayerStats], prefix: str) -> dict[str, int]:
    """The search's unit of every linear: one per (block, TEAL group), in model order."""
    units: dict[tuple[int, str], int] = {}
    unit_of = {}
    for name in stats:
        if not name.startswith(prefix + "."):
            raise ValueError(f"R-Sparse searches per block; layer {name!r} is outside {prefix}")
        block, _, local = name[len(prefix) + 1:].partition(".")
        key = (int(block), group_of(local))
        unit_of[name] = units.setdefault(key, len(units))
    return unit_of


def layer_plan(stats: dict[str, LayerStats], svds: dict[str, LayerSVD], unit_of: dict[str, int],
               genes: np.ndarray) -> dict[str, tuple[LayerStats, float, torch.Tensor, torch.Tensor, LayerBudget]]:
    """Threshold and low-rank factors of every linear for per-unit genes (s, alpha)."""
    plan = {}
    for name, s in stats.items():
        sp, alpha = genes[unit_of[name]]
        out_f, in_f = s.linear.out_features, s.linear.in_features
        budget = layer_budget(out_f, in_f, float(sp), float(alpha))
        down, up = svds[name].factors(budget.rank)
        plan[name] = (s, _threshold(s, budget.keep_fraction), down, up, budget)
    return plan


def _repair(genes: np.ndarray, weights: np.ndarray, target: float, max_s: float) -> np.ndarray:
    """Shift the sparsities so that their weighted mean is the target (clipped to [0, max_s])."""
    g = genes.copy()
    g[:, 1] = np.clip(g[:, 1], 0.0, 1.0)
    for _ in range(50):
        g[:, 0] = np.clip(g[:, 0] + (target - float(weights @ g[:, 0])), 0.0, max_s)
        if abs(float(weights @ g[:, 0]) - target) < 1e-6:
            break
    return g


def evolutionary_search(model: nn.Module, stats: dict[str, LayerStats], svds: dict[str, LayerSVD],
                        fitness_batches: list, target: float, *, generations: int = 6, population: int = 10,
                        seed: int = 0, max_sparsity: float = 0.9, initial_levels: dict[str, float] | None = None,
                        progress: bool = True) -> tuple[np.ndarray, dict[str, int], list]:
    """Per-unit (s, alpha) minimising the calibration loss at a weighted mean s = target.

    Genes: one (s, alpha) per unit (block x TEAL group). Starts from uniform s with alpha
    in {1, 0.9, 0.75}, from ``initial_levels`` (e.g. TEAL's greedy allocation) with alpha
    1 and 0.9 when given, and random perturbations; each generation keeps the best
    quarter and fills the rest with uniform crossovers of tournament-picked parents and
    Gaussian mutations, repaired back onto the budget. Returns the best genes, the unit of
    every linear and the best loss of every generation.
    """
    from tqdm.auto import tqdm

    prefix, _ = find_blocks(model)
    unit_of = search_units(stats, prefix)
    nb = max(unit_of.values()) + 1
    weights = np.zeros(nb)
    for name, s in stats.items():
        weights[unit_of[name]] += s.params
    weights /= weights.sum()
    rng = np.random.default_rng(seed)

    def fitness(genes: np.ndarray) -> float:
        plan = {n: p[:4] for n, p in layer_plan(stats, svds, unit_of, genes).items()}
        total = 0.0
        with torch.no_grad(), _RSparseHooks(plan):
            for batch in fitness_batches:
                if isinstance(batch, dict):
                    out = model(**batch, labels=batch["input_ids"])
                else:
                    out = model(batch, labels=batch)
                if getattr(out, "loss", None) is None:
                    raise ValueError("R-Sparse's search needs a causal LM that returns .loss for labels=")
                total += float(out.loss)
        return total / len(fitness_batches)

    seeds = [np.stack([np.full(nb, target), np.full(nb, a)], axis=1) for a in (1.0, 0.9, 0.75)]
    if initial_levels is not None:
        level = np.zeros(nb)
        for name, v in initial_levels.items():
            level[unit_of[name]] = v  # the linears of a unit share one level
        seeds = [np.stack([level, np.full(nb, a)], axis=1) for a in (1.0, 0.9)] + seeds
    pop = [_repair(g, weights, target, max_sparsity) for g in seeds]
    while len(pop) < population:
        g = np.stack([target + rng.normal(0, 0.08, nb), rng.uniform(0.6, 1.0, nb)], axis=1)
        pop.append(_repair(g, weights, target, max_sparsity))
    scored = [(fitness(g), i, g) for i, g in enumerate(pop)]
    history = []
    elite = max(2, population // 4)
    counter = len(scored)
    for _ in tqdm(range(generations), desc=f"R-Sparse search s={target:.2f}", disable=not progress):
        scored.sort(key=lambda t: (t[0], t[1]))
        history.append(scored[0][0])
        parents = scored[: max(elite, population // 2)]
        children = []
        while len(children) < population - elite:
            a, b = (min(rng.choice(len(parents), 2, replace=False)) for _ in range(2))
            mix = rng.random(nb) < 0.5
            child = np.where(mix[:, None], parents[a][2], parents[b][2])
            child = child + np.stack([rng.normal(0, 0.04, nb), rng.normal(0, 0.08, nb)], axis=1) * \
                (rng.random((nb, 1)) < 0.3)
            children.append(_repair(child, weights, target, max_sparsity))
        new = []
        for g in children:
            new.append((fitness(g), counter, g))
            counter += 1
        scored = scored[:elite] + new
    scored.sort(key=lambda t: (t[0], t[1]))
    history.append(scored[0][0])
    return scored[0][2], unit_of, history

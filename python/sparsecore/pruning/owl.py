"""OWL (Yin et al., 2024): outlier-weighted layer-wise sparsity.

Blocks whose Wanda scores |W_ij| * ||X_j|| hold more outliers (scores above ``m`` times the
block's mean score) matter more and are pruned less. The per-block outlier ratios are
rescaled to [0, 2 * lam] and centred, so sparsities stay within ``target ± lam`` and
average exactly to the target.
"""

from __future__ import annotations

import torch

from .calibration import InputStats, walk_blocks


def outlier_ratio(scores: list[torch.Tensor], m: float = 5.0) -> float:
    """Fraction of entries above ``m`` x the mean, over all score tensors of one block together."""
    flat = torch.cat([s.reshape(-1).double() for s in scores])
    if flat.numel() == 0:
        return 0.0
    return float((flat > m * flat.mean()).double().mean())


def owl_sparsities(ratios: list[float], sparsity: float, lam: float = 0.08) -> list[float]:
    """Per-block sparsities from outlier ratios: more outliers, less pruning; mean = ``sparsity``."""
    if not 0.0 <= lam:
        raise ValueError(f"lambda must be >= 0, got {lam}")
    r = torch.tensor(ratios, dtype=torch.float64)
    if r.numel() == 0:
        return []
    spread = float(r.max() - r.min())
    if spread == 0.0:
        return [float(sparsity)] * r.numel()
    scaled = (r - r.min()) / spread * (2.0 * lam)
    out = float(sparsity) - (scaled - scaled.mean())
    if float(out.min()) < 0.0 or float(out.max()) >= 1.0:
        raise ValueError(f"OWL with lambda {lam} takes sparsity {sparsity} out of [0, 1); use a smaller lambda")
    return [float(v) for v in out]


def owl_allocation(blocks, inputs, sparsity: float, *, select=None, m: float = 5.0, lam: float = 0.08,
                   progress: bool = True) -> list[float]:
    """Per-block sparsities measured on the dense model's calibration activations."""
    ratios: list[float] = []

    def visit(_b, linears, stats):
        scores = [mod.weight.detach().abs().double() * stats[name].norms.reshape(1, -1)
                  for name, mod in linears.items()]
        ratios.append(outlier_ratio(scores, m) if scores else 0.0)

    walk_blocks(blocks, inputs, lambda lin: InputStats(lin.in_features), visit, select, progress,
                desc="OWL outlier ratios")
    return owl_sparsities(ratios, sparsity, lam)

"""Calibrated thresholds: a histogram of activation scores per layer input, read as a CDF.

A threshold that drops fraction ``s`` of the scores on calibration text drops about ``s``
on new text too (TEAL's observation: the input distributions of a layer are stable,
zero-mean and unimodal). Bins are log-spaced, so thresholds of very different layers keep
the same relative precision; exact zeros are counted apart.
"""

from __future__ import annotations

import torch

LOG2_MIN = -40.0
LOG2_MAX = 24.0
BINS = 16384


class ScoreHistogram:
    """Counts of non-negative scores (``|x_j|`` or ``|x_j| * ||W[:, j]||``) in log2 bins."""

    def __init__(self):
        self.counts = torch.zeros(BINS, dtype=torch.float64)
        self.zeros = 0
        self.total = 0

    def update(self, scores: torch.Tensor) -> None:
        s = scores.detach().reshape(-1).to(torch.float32).cpu()
        if not torch.isfinite(s).all():
            raise ValueError("calibration activations contain NaN or Inf")
        positive = s[s > 0]
        self.zeros += s.numel() - positive.numel()
        self.total += s.numel()
        logs = positive.log2().clamp(LOG2_MIN, LOG2_MAX - 1e-6)
        self.counts += torch.histc(logs, bins=BINS, min=LOG2_MIN, max=LOG2_MAX).to(torch.float64)

    def threshold(self, sparsity: float) -> float:
        """The score below which fraction ``sparsity`` of the calibration scores lie.

        0 keeps every channel (threshold -1: nothing is below it); exact zeros are dropped
        first. Linear interpolation inside a bin, in log space.
        """
        if not 0.0 <= sparsity < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
        if self.total == 0:
            raise ValueError("the histogram is empty: no calibration data reached this layer")
        if sparsity == 0.0:
            return -1.0
        target = sparsity * self.total
        if target <= self.zeros:
            return 0.0
        cdf = self.zeros + torch.cumsum(self.counts, 0)
        i = int(torch.searchsorted(cdf, torch.tensor([target], dtype=torch.float64)).item())
        i = min(i, BINS - 1)
        before = float(cdf[i - 1]) if i > 0 else float(self.zeros)
        frac = (target - before) / max(float(self.counts[i]), 1e-300)
        width = (LOG2_MAX - LOG2_MIN) / BINS
        return float(2.0 ** (LOG2_MIN + (i + min(max(frac, 0.0), 1.0)) * width))

    def sparsity_at(self, threshold: float) -> float:
        """Fraction of the calibration scores at or below ``threshold``."""
        if threshold < 0:
            return 0.0
        if threshold == 0:
            return self.zeros / self.total
        pos = (torch.log2(torch.tensor(threshold)) - LOG2_MIN) / (LOG2_MAX - LOG2_MIN) * BINS
        whole = int(pos.clamp(0, BINS))
        below = float(self.counts[:whole].sum())
        if whole < BINS:
            below += float(self.counts[whole]) * (float(pos) - whole)
        return (self.zeros + below) / self.total

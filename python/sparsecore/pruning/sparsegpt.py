"""SparseGPT (Frantar & Alistarh, 2023): one-shot pruning with Optimal Brain Surgeon updates.

For a linear layer with calibration inputs X (tokens x in), the layer-wise loss
||W X^T - W' X^T||^2 has Hessian H = 2 X^T X. Columns are processed left to right: when a
weight is pruned, the error it leaves is spread over the not-yet-processed columns of its
row through the inverse Hessian (the OBS update), so the remaining weights compensate.
The paper's tricks are all here:

- the inverse Hessian is taken once, as the upper Cholesky factor of H^-1, whose rows are
  exactly the successive OBS inverses (no re-inversion per column);
- lazy batches: updates inside a batch of ``lazy_batch`` columns are applied eagerly, the
  rest of the matrix gets one matrix product per batch;
- dampening: ``damp`` x mean(diag H) is added to the diagonal (more if Cholesky fails);
- adaptive mask selection: the mask of each batch is chosen by w^2 / [H^-1]_jj^2 on the
  already-updated weights (unstructured over the batch, N:M per group of m, or whole
  blocks for BSR).
"""

from __future__ import annotations

import torch

from .masks import block_mask, nm_mask, unstructured_mask
from .pattern import Pattern


class HessianStats:
    """Running X^T X of a linear layer's inputs (float64), for H = 2 X^T X / tokens."""

    def __init__(self, in_features: int):
        self.xtx = torch.zeros(in_features, in_features, dtype=torch.float64)
        self.tokens = 0

    def update(self, x: torch.Tensor) -> None:
        x2 = x.detach().reshape(-1, x.shape[-1]).to(torch.float64).cpu()
        self.xtx.addmm_(x2.T, x2)
        self.tokens += x2.shape[0]

    @property
    def hessian(self) -> torch.Tensor:
        if self.tokens == 0:
            raise ValueError("no calibration tokens reached this layer")
        return self.xtx * (2.0 / self.tokens)


def _inverse_hessian_factor(h: torch.Tensor, damp: float) -> torch.Tensor:
    """Upper Cholesky factor U of (H + damp * mean(diag H) * I)^-1, retrying with more dampening."""
    mean_diag = float(h.diagonal().mean())
    eye = torch.eye(h.shape[0], dtype=h.dtype)
    for attempt in range(6):
        lam = damp * (10.0 ** attempt) * mean_diag
        chol, info = torch.linalg.cholesky_ex(h + lam * eye)
        if int(info) == 0:
            inv = torch.cholesky_inverse(chol)
            upper, info = torch.linalg.cholesky_ex(inv, upper=True)
            if int(info) == 0:
                return upper
    raise ValueError("the calibration Hessian is not positive definite even with 1e5x dampening; "
                     "use more calibration tokens")


def _lazy_batch(pattern: Pattern, lazy_batch: int, cols: int) -> int:
    """Columns per lazy batch: a multiple of the pattern's group width (m, or the block width)."""
    group = pattern.nm[1] if pattern.nm is not None else pattern.block[1] if pattern.block is not None else 1
    return max(group, lazy_batch // group * group) if cols else 1


def sparsegpt_prune_weight(weight: torch.Tensor, hessian: torch.Tensor, pattern: Pattern, *,
                           lazy_batch: int = 128, damp: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """Prune ``weight`` (out x in) to ``pattern`` with OBS updates; returns ``(new_weight, keep_mask)``.

    ``new_weight`` is zero wherever ``keep_mask`` is false and holds the compensated values
    elsewhere. ``hessian`` is H = 2 X^T X / tokens (``HessianStats.hessian``).

    Examples
    --------
    >>> import torch
    >>> from sparsecore.pruning import Pattern, sparsegpt_prune_weight
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(256, 16, generator=g, dtype=torch.float64)
    >>> w = torch.randn(8, 16, generator=g)
    >>> new_w, keep = sparsegpt_prune_weight(w, 2 * x.T @ x / 256, Pattern(nm=(2, 4)))
    >>> int(keep.sum()), bool((new_w[~keep] == 0).all())
    (64, True)
    """
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D, got shape {tuple(weight.shape)}")
    rows, cols = weight.shape
    if tuple(hessian.shape) != (cols, cols):
        raise ValueError(f"Hessian must be {cols}x{cols} for a weight with {cols} inputs, got {tuple(hessian.shape)}")
    if not bool(torch.isfinite(weight).all()) or not bool(torch.isfinite(hessian).all()):
        raise ValueError("weight or Hessian contains NaN or Inf")
    if not 0.0 <= damp:
        raise ValueError(f"damp must be >= 0, got {damp}")
    pattern.check("the weight", (rows, cols))
    h = hessian.detach().to(torch.float64, copy=True).cpu()
    w = weight.detach().to(torch.float32, copy=True).cpu()
    # Inputs that never fire carry no information: their weights are free to prune.
    dead = h.diagonal() == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    hinv = _inverse_hessian_factor(h, damp).to(torch.float32)
    keep = torch.ones(rows, cols, dtype=torch.bool)
    step = _lazy_batch(pattern, int(lazy_batch), cols)
    for c0 in range(0, cols, step):
        c1 = min(c0 + step, cols)
        w_batch = w[:, c0:c1].clone()
        hinv_batch = hinv[c0:c1, c0:c1]
        errors = torch.zeros_like(w_batch)
        d = hinv_batch.diagonal()
        if pattern.nm is None:
            # Unstructured and block masks are chosen for the whole batch at its start.
            scores = w_batch.double() ** 2 / d.double().reshape(1, -1) ** 2
            if pattern.block is not None:
                keep[:, c0:c1] = block_mask(scores, pattern.block, pattern.sparsity)
            else:
                keep[:, c0:c1] = unstructured_mask(scores, pattern.sparsity, per_row=False)
        m = pattern.nm[1] if pattern.nm is not None else 0
        for j in range(c1 - c0):
            if m and j % m == 0:
                # N:M masks are chosen group by group, on weights already updated by earlier groups.
                scores = w_batch[:, j:j + m].double() ** 2 / d[j:j + m].double().reshape(1, -1) ** 2
                keep[:, c0 + j:c0 + j + m] = nm_mask(scores, *pattern.nm)
            col = w_batch[:, j]
            kept = torch.where(keep[:, c0 + j], col, torch.zeros_like(col))
            err = (col - kept) / d[j]
            # OBS: move the pruned weights' error onto the later columns of the batch.
            w_batch[:, j:] -= err.unsqueeze(1) * hinv_batch[j, j:].unsqueeze(0)
            w_batch[:, j] = kept
            errors[:, j] = err
        w[:, c0:c1] = w_batch
        # Lazy update of everything right of the batch in one product.
        w[:, c1:] -= errors @ hinv[c0:c1, c1:]
    w[~keep] = 0.0
    return w.to(weight.dtype), keep

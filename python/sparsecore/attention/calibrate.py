"""Calibrating BLASST's ``a`` (``lambda = a / Lk``) on a model and held-out text."""

from __future__ import annotations

import math

import torch

from .configs import BLASSTConfig
from .hf import attention_modules, sparsify_attention_


def calibrate_blasst(model, documents: list[torch.Tensor], *, max_ppl_increase: float = 0.01,
                     candidates=(0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)) -> tuple[BLASSTConfig, list[dict]]:
    """The largest ``a`` among ``candidates`` whose perplexity on ``documents`` (1-D token
    tensors, each scored in one forward pass) stays within ``max_ppl_increase`` of dense.

    Returns the config and one row per candidate tried (``a``, perplexity, skipped tile
    fraction). Candidates are tried in increasing order and the search stops at the first
    one over the limit (more skipping never lowers the error). The model is left on the
    sparsecore kernel with the chosen config.
    """
    if not documents or any(not isinstance(d, torch.Tensor) or d.dim() != 1 or d.numel() < 2 for d in documents):
        raise ValueError("documents must be 1-D token tensors of at least 2 tokens")
    if not max_ppl_increase >= 0:
        raise ValueError(f"max_ppl_increase must be >= 0, got {max_ppl_increase}")

    def score(configs) -> tuple[float, float]:
        sparsify_attention_(model, *configs)
        stats: list = []
        for m in attention_modules(model):
            m.sparsecore_stats = stats
        nll, n = 0.0, 0
        with torch.no_grad():
            for doc in documents:
                logits = model(doc[:-1].unsqueeze(0), use_cache=False).logits[0].float()
                nll += float(torch.nn.functional.cross_entropy(logits, doc[1:], reduction="sum"))
                n += doc.numel() - 1
        for m in attention_modules(model):
            del m.sparsecore_stats
        computed = sum(s.tiles_computed for s in stats)
        skipped = sum(s.tiles_skipped for s in stats)
        return math.exp(nll / n), skipped / max(1, computed + skipped)

    dense, _ = score(())
    rows = [{"a": 0.0, "ppl": dense, "skipped": 0.0}]
    best = BLASSTConfig(0.0)
    for a in sorted(candidates):
        ppl, skipped = score((BLASSTConfig(float(a)),))
        rows.append({"a": float(a), "ppl": ppl, "skipped": skipped})
        if ppl > dense * (1 + max_ppl_increase):
            break
        best = BLASSTConfig(float(a))
    sparsify_attention_(model, best)
    return best, rows

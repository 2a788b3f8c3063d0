"""Perplexity of a causal LM on text, in non-overlapping windows (as the Wanda/SparseGPT papers report it)."""

from __future__ import annotations

import math

import torch


def perplexity(model, token_ids: torch.Tensor, *, window: int = 1024, max_tokens: int | None = 8192,
               progress: bool = False) -> float:
    """exp(mean next-token negative log-likelihood) over windows of ``window`` tokens.

    ``token_ids`` is a 1-D tensor; the first ``max_tokens`` are used (all if None).
    """
    from tqdm.auto import tqdm

    ids = token_ids.reshape(-1)
    if max_tokens is not None:
        ids = ids[:max_tokens]
    if ids.numel() < 2:
        raise ValueError("need at least 2 tokens")
    nll, count = 0.0, 0
    starts = list(range(0, ids.numel() - 1, window))
    with torch.no_grad():
        for s in tqdm(starts, desc="perplexity", disable=not progress):
            chunk = ids[s: s + window + 1]
            if chunk.numel() < 2:
                break
            inp = chunk[:-1].unsqueeze(0)
            logits = model(inp, use_cache=False).logits.float()
            loss = torch.nn.functional.cross_entropy(logits[0], chunk[1:], reduction="sum")
            nll += float(loss)
            count += chunk.numel() - 1
    return math.exp(nll / count)

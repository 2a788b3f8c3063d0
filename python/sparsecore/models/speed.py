"""Tokens per second of a causal LM on this machine: prefill (one pass over a prompt) and
greedy decode with the KV cache (one token per step), timed the way ``generate()`` runs the
model: the prefill fills a KV cache and computes the logits of the last position only
(``logits_to_keep=1``, as ``generate`` asks of HF models; the other positions' logits would
add a 49152 x 576 GEMM per token to SmolLM2's prefill), and every model, dense or sparse,
gets the same cache (:class:`~sparsecore.GrowingCache` by default)."""

from __future__ import annotations

import inspect
import time

import torch

from ..attention.kv_cache import GrowingCache


def _argmax_next(logits: torch.Tensor) -> torch.Tensor:
    return logits[:, -1:].argmax(dim=-1)


def prefill_kwargs(model, cache_factory=None) -> dict:
    """Keyword arguments of a ``generate``-like prefill call: a fresh KV cache and, where the
    model takes it, ``logits_to_keep=1``."""
    kwargs = {"use_cache": True, "past_key_values": (cache_factory or GrowingCache)()}
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        kwargs["logits_to_keep"] = 1
    return kwargs


def prefill_seconds(model, prompt_ids: torch.Tensor) -> float:
    with torch.no_grad():
        kwargs = prefill_kwargs(model)
        t0 = time.perf_counter()
        model(prompt_ids, **kwargs)
        return time.perf_counter() - t0


def decode_seconds(model, prompt_ids: torch.Tensor, new_tokens: int) -> float:
    """Seconds for ``new_tokens`` greedy decode steps after the prompt (prefill not counted)."""
    if new_tokens < 1:
        raise ValueError(f"new_tokens must be >= 1, got {new_tokens}")
    with torch.no_grad():
        out = model(prompt_ids, **prefill_kwargs(model))
        past, nxt = out.past_key_values, _argmax_next(out.logits)
        t0 = time.perf_counter()
        for _ in range(new_tokens):
            out = model(nxt, past_key_values=past, use_cache=True)
            past, nxt = out.past_key_values, _argmax_next(out.logits)
        return time.perf_counter() - t0


def compare_speed(models: dict, prompt_ids: torch.Tensor, *, new_tokens: int = 32, rounds: int = 3) -> dict:
    """``{name: {"prefill_tok_s", "decode_tok_s"}}``, medians over ``rounds`` rounds in which the
    models take turns (this VM's speed drifts over seconds; turns keep the ratios fair)."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    times = {name: {"prefill": [], "decode": []} for name in models}
    for name, model in models.items():  # warm-up: first calls allocate caches and plans
        decode_seconds(model, prompt_ids[:, :8], 2)
    for _ in range(rounds):
        for name, model in models.items():
            times[name]["prefill"].append(prefill_seconds(model, prompt_ids))
            times[name]["decode"].append(decode_seconds(model, prompt_ids, new_tokens))
    median = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    return {name: {"prefill_tok_s": prompt_ids.shape[1] / median(t["prefill"]),
                   "decode_tok_s": new_tokens / median(t["decode"])} for name, t in times.items()}

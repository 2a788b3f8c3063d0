"""Tokens per second of a causal LM on this machine: prefill (one pass over a prompt) and
greedy decode with the KV cache (one token per step), timed the way a user runs the model."""

from __future__ import annotations

import time

import torch


def _argmax_next(logits: torch.Tensor) -> torch.Tensor:
    return logits[:, -1:].argmax(dim=-1)


def prefill_seconds(model, prompt_ids: torch.Tensor) -> float:
    with torch.no_grad():
        t0 = time.perf_counter()
        model(prompt_ids, use_cache=False)
        return time.perf_counter() - t0


def decode_seconds(model, prompt_ids: torch.Tensor, new_tokens: int) -> float:
    """Seconds for ``new_tokens`` greedy decode steps after the prompt (prefill not counted)."""
    if new_tokens < 1:
        raise ValueError(f"new_tokens must be >= 1, got {new_tokens}")
    with torch.no_grad():
        out = model(prompt_ids, use_cache=True)
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

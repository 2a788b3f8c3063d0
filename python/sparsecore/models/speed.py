"""Tokens per second of a causal LM on this machine: prefill (one pass over a prompt) and
greedy decode with the KV cache (one token per step), timed the way ``generate()`` runs the
model: the prefill fills a KV cache and computes the logits of the last position only
(``logits_to_keep=1``, as ``generate`` asks of HF models; the other positions' logits would
add a 49152 x 576 GEMM per token to SmolLM2's prefill), and every model, dense or sparse,
gets the same cache (:class:`~sparsecore.GrowingCache` by default).

``compiled=True`` runs every decode step through ``torch.compile(model.forward)`` over a
transformers ``StaticCache`` (the path ``generate(cache_implementation="static")`` with a
compiled forward takes), for every model alike: HF's per-step Python goes into the graph,
and the sparsecore ops compile inside it. The prefill stays eager; the first compile of a
model (tens of seconds on a CPU) happens in the warm-up, outside the timings."""

from __future__ import annotations

import inspect
import time
import weakref

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


# model -> its compiled forward (kept while the model lives; compiled once per model).
_COMPILED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _compiled_forward(model):
    step = _COMPILED.get(model)
    if step is None:
        # Every model of one class shares forward's code object, and Dynamo keeps a limited
        # number of compiled versions per code object (then runs it eagerly, silently): a
        # table of models at several batch sizes needs more than the default.
        for knob in ("recompile_limit", "cache_size_limit"):
            if hasattr(torch._dynamo.config, knob):
                setattr(torch._dynamo.config, knob, max(getattr(torch._dynamo.config, knob), 64))
        step = _COMPILED[model] = torch.compile(model.forward, dynamic=False)
    return step


def _decode_compiled(model, prompt_ids: torch.Tensor, new_tokens: int, record: list | None = None) -> float:
    """Timed compiled decode; ``record`` (a list) receives each step's tokens."""
    from transformers import StaticCache

    length = prompt_ids.shape[1]
    cache = StaticCache(config=model.config, max_cache_len=length + new_tokens)
    step = _compiled_forward(model)
    out = model(prompt_ids, past_key_values=cache, use_cache=True, cache_position=torch.arange(length),
                **({"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}))
    nxt = _argmax_next(out.logits)
    t0 = time.perf_counter()
    for i in range(new_tokens):
        if record is not None:
            record.append(nxt)
        out = step(input_ids=nxt, past_key_values=cache, use_cache=True, cache_position=torch.tensor([length + i]))
        nxt = _argmax_next(out.logits)
    return time.perf_counter() - t0


def decode_seconds(model, prompt_ids: torch.Tensor, new_tokens: int, compiled: bool = False) -> float:
    """Seconds for ``new_tokens`` greedy decode steps after the prompt (prefill not counted);
    ``compiled``: through the compiled forward over a static cache (module docstring)."""
    if new_tokens < 1:
        raise ValueError(f"new_tokens must be >= 1, got {new_tokens}")
    with torch.no_grad():
        if compiled:
            return _decode_compiled(model, prompt_ids, new_tokens)
        out = model(prompt_ids, **prefill_kwargs(model))
        past, nxt = out.past_key_values, _argmax_next(out.logits)
        t0 = time.perf_counter()
        for _ in range(new_tokens):
            out = model(nxt, past_key_values=past, use_cache=True)
            past, nxt = out.past_key_values, _argmax_next(out.logits)
        return time.perf_counter() - t0


def compare_speed(models: dict, prompt_ids: torch.Tensor, *, new_tokens: int = 32, rounds: int = 3,
                  compiled: bool = False) -> dict:
    """``{name: {"prefill_tok_s", "decode_tok_s"}}``, medians over ``rounds`` rounds in which the
    models take turns (this VM's speed drifts over seconds; turns keep the ratios fair).
    ``compiled``: decode steps through each model's compiled forward (module docstring)."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    times = {name: {"prefill": [], "decode": []} for name in models}
    for name, model in models.items():  # warm-up: first calls allocate caches and plans
        if compiled:  # compiles for exactly the timed shapes (prompt, cache length)
            decode_seconds(model, prompt_ids, new_tokens, compiled=True)
        else:
            decode_seconds(model, prompt_ids[:, :8], 2)
    for _ in range(rounds):
        for name, model in models.items():
            times[name]["prefill"].append(prefill_seconds(model, prompt_ids))
            times[name]["decode"].append(decode_seconds(model, prompt_ids, new_tokens, compiled=compiled))
    median = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    return {name: {"prefill_tok_s": prompt_ids.shape[1] / median(t["prefill"]),
                   "decode_tok_s": new_tokens / median(t["decode"])} for name, t in times.items()}

"""Where the time of a decode step and of a prefill goes, per op family.

Forward hooks time every module and charge each one's *exclusive* time (its own time minus
its children's) to a family: the block linears (dense or sparsecore), the lm_head, the
embedding, norms, rotary, the attention module without its projections (the attention
kernel, rotary application, reshapes), the MLP without its linears (the activation and
product), and "other": the decoder layers' residual adds, HF's model-level code, the KV
cache, sampling and Python between calls (the step's wall time minus all of the above).
``torch.profiler`` then runs the same step to list the operators that take the most time.
"""

from __future__ import annotations

import time
from collections import defaultdict

import torch
from torch import nn

from .speed import prefill_kwargs

FAMILIES = ("linears", "lm_head", "attention", "mlp elementwise", "norms", "rotary", "embedding", "other")


def _is_linear(m: nn.Module) -> bool:
    return isinstance(m, nn.Linear) or (hasattr(m, "in_features") and hasattr(m, "out_features"))


def module_families(model: nn.Module) -> dict[nn.Module, str]:
    """The family each timed module's exclusive time goes to (unlisted modules: "other")."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    embed = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    out: dict[nn.Module, str] = {}
    for m in model.modules():
        name = type(m).__name__
        if m is head:
            out[m] = "lm_head"
        elif m is embed:
            out[m] = "embedding"
        elif _is_linear(m):
            out[m] = "linears"
        elif name.endswith(("RMSNorm", "LayerNorm")):
            out[m] = "norms"
        elif "Rotary" in name:
            out[m] = "rotary"
        elif any(hasattr(m, p) for p in ("q_proj", "qkv_proj", "query_key_value")):
            out[m] = "attention"
        elif any(hasattr(m, p) for p in ("gate_proj", "up_proj", "gate_up_proj", "fc1")):
            out[m] = "mlp elementwise"
    return out


class FamilyTimer:
    """Context manager: hooks that add each module's exclusive seconds to its family."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.families = module_families(model)
        self.seconds: dict[str, float] = defaultdict(float)
        self._stack: list[list[float]] = []
        self._handles: list = []

    def _pre(self, module, args):
        self._stack.append([time.perf_counter(), 0.0])

    def _post(self, module, args, output):
        t0, children = self._stack.pop()
        elapsed = time.perf_counter() - t0
        if self._stack:
            self._stack[-1][1] += elapsed
        self.seconds[self.families.get(module, "other")] += elapsed - children

    def __enter__(self):
        for m in self.model.modules():
            self._handles.append(m.register_forward_pre_hook(self._pre))
            self._handles.append(m.register_forward_hook(self._post))
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._stack.clear()


def profile_model(model, prompt: torch.Tensor, *, decode_steps: int = 16, prefill_repeats: int = 2,
                  top_ops: int = 8) -> dict:
    """Per-family milliseconds of one decode step (mean over ``decode_steps`` greedy steps
    after ``prompt``) and of one prefill of ``prompt`` (mean over ``prefill_repeats``; as
    ``generate`` runs it: filling a cache, logits of the last position only), plus
    the ``top_ops`` operators by self CPU time of a decode step under ``torch.profiler``.

    Returns ``{"decode": {family: ms, ..., "total": ms}, "prefill": {...}, "top_ops": [(name, ms)]}``.
    The hooks cost a few microseconds per module call; the totals are measured with them on.
    """
    if decode_steps < 1 or prefill_repeats < 1:
        raise ValueError("decode_steps and prefill_repeats must be >= 1")
    if not isinstance(prompt, torch.Tensor) or prompt.dim() != 2 or prompt.shape[1] < 1:
        raise ValueError("prompt must be a [batch, tokens] tensor of token ids")
    with torch.no_grad():
        model(prompt[:, :8], use_cache=False)  # warm-up: plans, caches, thread pools
        timer = FamilyTimer(model)
        with timer:
            out = model(prompt, **prefill_kwargs(model))
            past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
            timer.seconds.clear()  # the prompt's prefill is not a decode step
            total = 0.0
            for _ in range(decode_steps):
                t0 = time.perf_counter()
                out = model(token, past_key_values=past, use_cache=True)
                past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
                total += time.perf_counter() - t0
        result = {"decode": _per_call(timer.seconds, total, decode_steps)}
        timer = FamilyTimer(model)
        total = 0.0
        with timer:
            for _ in range(prefill_repeats):
                kwargs = prefill_kwargs(model)
                t0 = time.perf_counter()
                model(prompt, **kwargs)
                total += time.perf_counter() - t0
        result["prefill"] = _per_call(timer.seconds, total, prefill_repeats)
    result["top_ops"] = _top_ops(model, prompt, top_ops) if top_ops > 0 else []
    return result


def dense_twin(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every sparsecore linear (weight- or activation-sparse) turned
    back into a dense ``nn.Linear`` holding the same (pruned) weights: the same-stack dense
    baseline of a profile. Attention recipes are kept (they are not linears)."""
    import copy

    from ..activation import ActSparseLinear
    from ..nn import SparseLinear

    twin = copy.deepcopy(model)
    for name, m in list(twin.named_modules()):
        if not isinstance(m, (SparseLinear, ActSparseLinear)):
            continue
        w = m.weight if isinstance(m.weight, torch.Tensor) else m.weight.to_dense()
        bias = getattr(m, "bias", None)
        lin = nn.Linear(m.in_features, m.out_features, bias=bias is not None, device=w.device, dtype=w.dtype)
        with torch.no_grad():
            lin.weight.copy_(w)
            if bias is not None:
                lin.bias.copy_(bias)
        parent_name, _, child = name.rpartition(".")
        setattr(twin.get_submodule(parent_name) if parent_name else twin, child, lin)
    return twin


def _per_call(seconds: dict, total: float, calls: int) -> dict:
    ms = {f: 1e3 * seconds.get(f, 0.0) / calls for f in FAMILIES if f != "other"}
    ms["other"] = 1e3 * total / calls - sum(ms.values())
    ms["total"] = 1e3 * total / calls
    return ms


def _top_ops(model, prompt: torch.Tensor, count: int) -> list[tuple[str, float]]:
    """The operators with the most self CPU time in one decode step (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad():
        out = model(prompt, **prefill_kwargs(model))
        past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model(token, past_key_values=past, use_cache=True)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    return [(e.key, e.self_cpu_time_total / 1e3) for e in events[:count]]


def format_profile(profiles: dict[str, dict]) -> str:
    """Markdown tables of :func:`profile_model` results, one column per model."""
    names = list(profiles)
    lines = []
    for phase, title in (("decode", "one decode step"), ("prefill", "one prefill")):
        lines += [f"\nms per {title.split(' ', 1)[1]} (batch 1)\n",
                  "| family | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for f in FAMILIES + ("total",):
            cells = []
            for n in names:
                p = profiles[n][phase]
                share = f" ({p[f] / p['total']:.0%})" if f != "total" and p["total"] > 0 else ""
                cells.append(f"{p[f]:.2f}{share}")
            lines.append(f"| {f} | " + " | ".join(cells) + " |")
    for n in (n for n in names if profiles[n]["top_ops"]):
        lines += [f"\ntop operators of one decode step ({n}, torch.profiler self CPU ms)\n", "| operator | ms |",
                  "|---|---|"]
        lines += [f"| `{name}` | {ms:.2f} |" for name, ms in profiles[n]["top_ops"]]
    return "\n".join(lines)

"""sparsecore attention inside HF ``transformers`` models.

:func:`register` adds ``"sparsecore"`` to ``transformers.AttentionInterface`` (the
attention call) and ``AttentionMaskInterface`` (the mask: only the 2-D padding mask, or
None, so HF never builds a dense ``L x L`` mask). :func:`sparsify_attention_` switches a
model to it and attaches the recipes: each attention module then runs the sparsecore
kernel with whatever its configs plan for the call (window, block mask, BLASST), and a
module without a config runs the dense kernel. Models with their own per-layer sliding
windows (Gemma-3) keep them: HF passes each layer's window to the call.
"""

from __future__ import annotations

import torch
from torch import nn

from .configs import config_from_dict, config_to_dict, merge_plans
from .functional import flash_attention

NAME = "sparsecore"
_registered = False


def _padding_ranges(attention_mask, batch: int, kv_len: int):
    """kv_start / kv_end per batch element from HF's 2-D padding mask (None: no padding)."""
    if attention_mask is None:
        return None, None
    m = attention_mask
    if m.dim() != 2:
        raise ValueError(f"sparsecore attention expects HF's 2-D padding mask, got shape {tuple(m.shape)} "
                         "(was the model switched with sparsify_attention_?)")
    m = m[:, -kv_len:].bool()
    if m.shape != (batch, kv_len):
        raise ValueError(f"padding mask of shape {tuple(m.shape)} does not match {batch} x {kv_len} keys")
    idx = torch.arange(kv_len)
    any_key = m.any(1)
    start = torch.where(m, idx, kv_len).amin(1)
    end = torch.where(m, idx + 1, 0).amax(1)
    start = torch.where(any_key, start, 0)
    if bool((m.sum(1) != end - start).any()):
        raise ValueError("sparsecore attention supports left or right padding only (one run of real tokens per row)")
    return start.to(torch.int64), end.to(torch.int64)


def attention_forward(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask, dropout: float = 0.0, scaling: float | None = None,
                      is_causal: bool | None = None, softcap: float | None = None,
                      sliding_window: int | None = None, **kwargs):
    """The ``AttentionInterface`` entry: HF's [B, H, L, D] q/k/v in, [B, L, H, D] out."""
    if dropout:
        raise ValueError("sparsecore attention is for inference: attention dropout must be 0 (call model.eval())")
    if kwargs.get("output_attentions"):
        raise ValueError("sparsecore attention does not return attention weights (output_attentions=True)")
    B, _, lq, _ = query.shape
    lk = key.shape[2]
    if attention_mask is not None and getattr(key, "_sparsecore_streaming", False):
        raise ValueError("a StreamingCache cannot follow a padding mask (its evicted cache no longer lines up with "
                         "the mask): generate without padding, one sequence per batch row of equal length")
    kv_start, kv_end = _padding_ranges(attention_mask, B, lk)
    causal = getattr(module, "is_causal", True) if is_causal is None else is_causal
    configs = getattr(module, "sparsecore_attention", ())
    layer_idx = getattr(module, "layer_idx", 0) or 0
    plan = merge_plans([c.plan(query, key, layer_idx) for c in configs])
    window = plan.get("window")
    if sliding_window:
        window = sliding_window if window is None else min(window, sliding_window)
    stats_sink = getattr(module, "sparsecore_stats", None)
    out = flash_attention(query, key, value, block_mask=plan.get("block_mask"), causal=causal, window=window,
                          sinks=plan.get("sinks", 0) if window else 0, scale=scaling, softcap=softcap,
                          kv_start=kv_start, kv_end=kv_end, blasst_lambda=plan.get("blasst_lambda"),
                          return_stats=stats_sink is not None)
    if stats_sink is not None:
        out, stats = out
        stats_sink.append(stats)
    return out.transpose(1, 2), None


def _mask_function(batch_size, q_length=None, kv_length=None, *args, attention_mask=None, **kwargs):
    """``AttentionMaskInterface`` entry: the 2-D padding mask cut to the keys, or None without padding."""
    kv_length = kwargs.get("kv_length", kv_length)
    if attention_mask is None:
        return None
    attention_mask = attention_mask[:, -kv_length:] if kv_length else attention_mask
    return None if bool(attention_mask.all()) else attention_mask.bool()


def register() -> None:
    """Registers ``"sparsecore"`` with transformers' attention and mask interfaces (idempotent)."""
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, attention_forward)
    AttentionMaskInterface.register(NAME, _mask_function)
    _registered = True


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The attention modules HF calls through ``ALL_ATTENTION_FUNCTIONS`` (those with a ``layer_idx``)."""
    found = [m for m in model.modules()
             if hasattr(m, "layer_idx") and any(hasattr(m, p) for p in ("q_proj", "qkv_proj", "query_key_value"))]
    if not found:
        raise ValueError(f"no attention modules with a layer_idx found in {type(model).__name__}")
    return found


def sparsify_attention_(model: nn.Module, *configs, layers=None) -> nn.Module:
    """Runs ``model``'s attention on sparsecore's kernel with the given recipes (in place).

    ``configs``: any of :class:`StaticAttentionConfig`, :class:`TopKAttentionConfig`,
    :class:`BLASSTConfig`, :class:`QuestConfig` (several compose, e.g. a window with BLASST);
    none: dense attention on the sparsecore kernel. ``layers``: indices of the layers to
    sparsify (default all; the others run dense). Composes with weight and activation
    sparsity (:func:`sparsecore.sparsify_`). The recipe is recorded in
    ``model.config.sparsecore_attention`` and comes back with :func:`apply_recipe`.
    """
    from .configs import ATTENTION_CONFIGS

    for c in configs:
        if type(c).__name__ not in ATTENTION_CONFIGS:
            raise TypeError(f"not an attention config: {type(c).__name__}")
    kinds = [type(c).__name__ for c in configs]
    if len(set(kinds)) != len(kinds):
        raise ValueError(f"each attention config kind may appear once, got {kinds}")
    modules = attention_modules(model)
    if layers is not None:
        layers = set(int(i) for i in layers)
        bad = layers - {m.layer_idx for m in modules}
        if bad:
            raise ValueError(f"layers {sorted(bad)} are not attention layers of this model")
    register()
    for m in modules:
        m.sparsecore_attention = tuple(configs) if layers is None or m.layer_idx in layers else ()
    model.set_attn_implementation(NAME)
    recipe = {"configs": [config_to_dict(c) for c in configs], "layers": None if layers is None else sorted(layers)}
    model.config.sparsecore_attention = recipe
    return model


def apply_recipe(model: nn.Module, recipe: dict) -> nn.Module:
    """Re-applies a recipe :func:`sparsify_attention_` recorded (e.g. after loading a saved model)."""
    if not isinstance(recipe, dict) or "configs" not in recipe:
        raise ValueError(f"not an attention recipe: {recipe!r}")
    return sparsify_attention_(model, *[config_from_dict(d) for d in recipe["configs"]], layers=recipe.get("layers"))

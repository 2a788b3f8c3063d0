"""Per-layer prefill choice for activation-sparse layers, by measurement.

At one token the activation-sparse kernel skips the inactive channels' weight columns and
wins; over a prompt, torch's dense GEMM on the masked input (the weight seen densely, or
written densely from weight-sparse runs) may be faster, by how much depending on the CPU
(its bf16 GEMM is 4x slower than fp32 on AVX2-only machines and 4x faster on ones with
AVX512-BF16). So each layer is timed both ways on inputs at its own calibrated sparsity,
and calls with at least ``gemm_from_tokens`` rows take the GEMM. The two paths compute
the same product (fp32 accumulation both), so quality does not change.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import torch

from .linear import ActSparseLinear


def _inputs(layer: ActSparseLinear, tokens: int) -> torch.Tensor:
    """One sequence of ``tokens`` Gaussian inputs whose fraction below the threshold is the
    layer's target sparsity (so the kernel skips as many channels as on real text)."""
    target = layer.target_sparsity if layer.target_sparsity is not None else 0.5
    z = NormalDist().inv_cdf((1.0 + min(max(float(target), 0.01), 0.99)) / 2.0)
    sigma = max(layer.threshold, 1e-6) / z if math.isfinite(layer.threshold) else 1.0
    x = torch.randn(1, tokens, layer.in_features) * sigma
    if layer.scale is not None:
        x = x / layer.scale.clamp_min(1e-12)
    return x.to(layer.packed.dtype)


def _path(layer: ActSparseLinear, gemm: bool):
    # The whole forward, prefill policy included (its dense head of the prompt costs the
    # kernel a full pass over the weight; the GEMM takes it in the same call).
    def run(x):
        layer.gemm_from_tokens = 1 if gemm else None
        return layer(x)
    run.gemm = gemm  # which path (for readers of the timings)
    return run


def tune_prefill_(layers, prefill_tokens: int | None = 128) -> dict[str, int | None]:
    """Set ``gemm_from_tokens`` on every CPU :class:`ActSparseLinear` in ``layers`` (a dict
    name -> layer): the smallest of 16, 64 and ``prefill_tokens`` from which the masked
    dense GEMM beats the activation-sparse kernel at every larger one; None (the kernel at
    every length) where it does not win at ``prefill_tokens``. Returns name -> choice."""
    from ..kernel_choice import _interleaved_times, _prefill_ladder

    names = [n for n, m in layers.items() if m.packed.device.type == "cpu"]
    mods = [layers[n] for n in names]
    if not mods or not prefill_tokens or prefill_tokens < 2:
        for m in mods:
            m.gemm_from_tokens = None
        return {n: None for n in names}
    ladder = _prefill_ladder(prefill_tokens)
    wins = [[] for _ in mods]
    with torch.no_grad():
        for t in ladder:
            inputs = [_inputs(m, t) for m in mods]
            kernel_ms, gemm_ms = _interleaved_times([[_path(m, False) for m in mods], [_path(m, True) for m in mods]],
                                                    inputs, reps=3)
            for w, k, g in zip(wins, kernel_ms, gemm_ms):
                w.append(g < k)
    chosen = {}
    for name, m, w in zip(names, mods, wins):
        m.gemm_from_tokens = None
        for t, gemm_wins in reversed(list(zip(ladder, w))):
            if not gemm_wins:
                break
            m.gemm_from_tokens = t
        chosen[name] = m.gemm_from_tokens
    return chosen

"""``flash_attention``: the user-facing call of the attention kernels (CPU, and CUDA for bf16/fp16)."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ..ops import attention as _ops  # noqa: F401  (registers sparsecore::flash_attention)
from .mask import BlockMask


class AttentionStats(NamedTuple):
    """Tiles (up to 64 keys x one group of q rows) the kernel ran and those BLASST skipped."""

    tiles_computed: int
    tiles_skipped: int

    @property
    def skipped_fraction(self) -> float:
        total = self.tiles_computed + self.tiles_skipped
        return self.tiles_skipped / total if total else 0.0


def _per_batch(values, name: str, batch: int) -> torch.Tensor | None:
    if values is None:
        return None
    t = torch.as_tensor(values, dtype=torch.int64).reshape(-1).contiguous()
    if t.numel() != batch:
        raise ValueError(f"{name} must have one entry per batch element ({batch}), got {t.numel()}")
    return t


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, block_mask: BlockMask | None = None,
                    causal: bool = True, window: int | None = None, sinks: int = 0, scale: float | None = None,
                    softcap: float | None = None, kv_start=None, kv_end=None, blasst_lambda: float | None = None,
                    return_lse: bool = False, return_stats: bool = False):
    """``softmax(scale * q k^T) v`` over the keys each query may see, on the sparsecore CPU kernel.

    q is ``[B, Hq, Lq, D]``, k and v ``[B, Hkv, Lk, D]`` (GQA/MQA when ``Hkv < Hq``), float32,
    bfloat16 or float16, any strides with a contiguous head dim (HF's layouts need no copy).
    Query row ``i`` sits at key position ``Lk - Lq + i`` (the queries are the last ``Lq``
    entries of the KV cache), so chunked prefill and decode are the same call. ``causal``: no key after the query; ``window``: only the last
    ``window`` keys (a query sees itself and ``window - 1`` keys before it), except the
    first ``sinks`` keys, which stay visible; ``kv_start``/``kv_end`` (one int per batch
    element): the valid keys of left/right-padded batches (padding hides keys; it does
    not move the queries). ``softcap``: scores become
    ``softcap * tanh(s / softcap)`` (Gemma-2). ``block_mask``: only the listed KV blocks of
    each q block are computed. ``blasst_lambda``: BLASST skipping, a tile whose scores all
    lie below the running row max by more than ``-log(blasst_lambda)`` is skipped (``0`` or
    ``None``: never).

    A row that sees no key returns zeros (and ``-inf`` log-sum-exp). A q row holding NaN or
    Inf, or a row that sees a k or v row holding one, returns NaN.

    Returns ``out`` (q's shape and dtype), plus the log-sum-exp ``[B, Hq, Lq]`` (float32,
    natural log of the sum of ``exp(scores)``) with ``return_lse``, plus
    :class:`AttentionStats` with ``return_stats``.

    Examples
    --------
    >>> import torch
    >>> from sparsecore.attention import flash_attention
    >>> q, k, v = torch.ones(1, 2, 3, 64), torch.ones(1, 1, 3, 64), torch.arange(3.).view(1, 1, 3, 1).expand(1, 1, 3, 64)
    >>> flash_attention(q, k, v)[0, 0, :, 0].tolist()   # row i averages v[0..i]
    [0.0, 0.5, 1.0]
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{name} must be 4-D [batch, heads, length, head_dim], got shape {tuple(t.shape)}")
    B, hq, lq, d = q.shape
    lk = k.shape[2]
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    window = 0 if window is None else int(window)
    if window < 0:
        raise ValueError(f"window must be >= 0 (or None), got {window}")
    softcap = 0.0 if softcap is None else float(softcap)
    if blasst_lambda is None or blasst_lambda == 0:
        log_lambda = -math.inf
    else:
        if not 0 < float(blasst_lambda) <= 1:
            raise ValueError(f"blasst_lambda must be in [0, 1], got {blasst_lambda}")
        log_lambda = math.log(float(blasst_lambda))
    row_ptr = col_idx = None
    block_q = block_k = mask_batch = mask_heads = 0
    if block_mask is not None:
        if not isinstance(block_mask, BlockMask):
            raise TypeError(f"block_mask must be a sparsecore.attention.BlockMask, got {type(block_mask).__name__}")
        if not block_mask.matches(lq, lk):
            raise ValueError(f"block_mask is for a {block_mask.q_len} x {block_mask.kv_len} attention, "
                             f"the inputs are {lq} x {lk}")
        row_ptr, col_idx = block_mask.lists_on(q.device)
        block_q, block_k = block_mask.block_q, block_mask.block_k
        mask_batch, mask_heads = block_mask.batch, block_mask.heads
    starts, ends = _per_batch(kv_start, "kv_start", B), _per_batch(kv_end, "kv_end", B)
    if q.device.type == "cuda":
        # Ranges given on the CPU are checked here; ranges already on the GPU are clamped into
        # [0, Lk] by the kernel (reading them here would synchronise every call).
        s_cpu = starts if starts is None or starts.device.type == "cpu" else None
        e_cpu = ends if ends is None or ends.device.type == "cpu" else None
        for b in range(B if (s_cpu is not None or e_cpu is not None) else 0):
            s0 = 0 if s_cpu is None else int(s_cpu[b])
            e0 = lk if e_cpu is None else int(e_cpu[b])
            if s0 < 0 or e0 < s0 or e0 > lk:
                raise ValueError(f"flash_attention: batch {b} has KV range [{s0}, {e0}) outside [0, {lk})")
        starts = None if starts is None else starts.to(q.device, non_blocking=True)
        ends = None if ends is None else ends.to(q.device, non_blocking=True)
    out, lse, stats = torch.ops.sparsecore.flash_attention(
        q, k, v, row_ptr, col_idx, block_q, block_k, mask_batch, mask_heads, starts, ends, bool(causal), window,
        int(sinks), scale, softcap, log_lambda)
    result = (out,)
    if return_lse:
        result += (lse,)
    if return_stats:
        result += (AttentionStats(int(stats[0]), int(stats[1])),)
    return result[0] if len(result) == 1 else result

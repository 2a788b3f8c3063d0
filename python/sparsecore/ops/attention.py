"""Flash attention as a torch op: ``sparsecore::flash_attention``.

``out = softmax(scale * q k^T + mask) v`` with an online softmax and fp32 accumulation,
on the CPU kernels of ``csrc/cpu/attention`` or, for CUDA tensors (bf16/fp16, head dim 64, 128
or 256), the tensor-core kernel of ``csrc/cuda/attention``. q is ``[B, Hq, Lq, D]``, k and v are
``[B, Hkv, Lk, D]`` (``Hq`` a multiple of ``Hkv``: GQA/MQA) in float32, bfloat16 or
float16, with any strides as long as the head dim is contiguous (otherwise it is copied).
The op returns ``(out, lse, stats)``: ``out`` in q's dtype and shape, the log-sum-exp of
each row's scores (float32 ``[B, Hq, Lq]``; ``-inf`` for a row that sees no key) and
``stats = [tiles computed, tiles BLASST skipped]`` (int64).

Positions follow ``sparsecore/attention.h``: query row ``i`` sits at key position
``Lk - Lq + i`` (the queries are the last ``Lq`` cache entries); ``causal``, ``window``
(with ``sinks``) and the valid KV range ``[kv_start[b], kv_end[b])`` of each batch element
(padding) decide what it sees. A block mask (``block_row_ptr``,
``block_col_idx``, from :class:`sparsecore.attention.BlockMask`) lists the KV blocks each
q block computes; unlisted blocks are never read.

NaN rule: a q row holding NaN or Inf gives a NaN row, and so does a row that sees a key
whose k or v holds one (in a tile that is computed).
"""

from __future__ import annotations

import math
import os

import torch

from .._dtypes import VALUE_DTYPES, dtype_code
from .._native import _C
from ._common import on_device, require, stream_of
from ._library import lib

ATTN_MAX_DIM = int(_C.ATTN_MAX_DIM)

lib.define("flash_attention(Tensor q, Tensor k, Tensor v, Tensor? block_row_ptr, Tensor? block_col_idx, "
           "int block_q, int block_k, int mask_batch, int mask_heads, Tensor? kv_start, Tensor? kv_end, "
           "bool causal, int window, int sinks, float scale, float softcap, float blasst_log_lambda) "
           "-> (Tensor, Tensor, Tensor)")


def _tensor4(t: torch.Tensor) -> tuple:
    return (t.data_ptr(), dtype_code(t.dtype, "attention input"), *t.shape, *t.stride()[:3])


def _check(q, k, v, row_ptr, col_idx, block_q, block_k, mask_batch, mask_heads, kv_start, kv_end, causal, window,
           sinks, scale, softcap, blasst_log_lambda):
    for name, t in (("q", q), ("k", k), ("v", v)):
        require(t, name, dtype=VALUE_DTYPES, ndim=4, contiguous=False)
        if t.device != q.device:
            raise ValueError(f"flash_attention: {name} is on {t.device}, q on {q.device}")
        if t.device.type not in ("cpu", "cuda"):
            raise ValueError(f"flash_attention: {name} is on {t.device}; the kernels run on the CPU and CUDA GPUs")
    if q.device.type == "cuda":
        if not (q.dtype == k.dtype == v.dtype and q.dtype in (torch.bfloat16, torch.float16)):
            raise TypeError(f"flash_attention on CUDA takes bfloat16 or float16 q, k and v of one dtype (tensor "
                            f"cores), got {q.dtype}, {k.dtype}, {v.dtype}")
        if q.shape[3] not in (64, 128, 256):
            raise ValueError(f"flash_attention on CUDA: head dim {q.shape[3]} is not supported (64, 128 or 256)")
    B, hq, lq, d = q.shape
    if k.shape[0] != B or v.shape[0] != B:
        raise ValueError(f"flash_attention: q, k and v must share the batch size, got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    if k.shape != v.shape:
        raise ValueError(f"flash_attention: k and v must have the same shape, got {tuple(k.shape)} and {tuple(v.shape)}")
    if k.shape[3] != d:
        raise ValueError(f"flash_attention: q has head dim {d}, k has {k.shape[3]}")
    if k.dtype != v.dtype:
        raise TypeError(f"flash_attention: k and v must have the same dtype, got {k.dtype} and {v.dtype}")
    hkv = k.shape[1]
    if hq > 0 and (hkv == 0 or hq % hkv):
        raise ValueError(f"flash_attention: {hq} q heads are not a multiple of {hkv} KV heads")
    if not 1 <= d <= ATTN_MAX_DIM:
        raise ValueError(f"flash_attention: head dim {d} is not supported (1..{ATTN_MAX_DIM})")
    lk = k.shape[2]
    if causal and lq > lk:
        raise ValueError(f"flash_attention: causal attention with more queries ({lq}) than keys ({lk})")
    if window < 0 or sinks < 0:
        raise ValueError(f"flash_attention: window and sinks must be >= 0, got {window} and {sinks}")
    if window > 0 and not causal:
        raise ValueError("flash_attention: a sliding window needs causal=True")
    if not math.isfinite(scale):
        raise ValueError(f"flash_attention: scale must be finite, got {scale}")
    if not (softcap >= 0 and math.isfinite(softcap)):
        raise ValueError(f"flash_attention: softcap must be >= 0 and finite, got {softcap}")
    if math.isnan(blasst_log_lambda) or blasst_log_lambda > 0:
        raise ValueError(f"flash_attention: BLASST log(lambda) must be <= 0, got {blasst_log_lambda}")
    for name, t in (("kv_start", kv_start), ("kv_end", kv_end)):
        if t is not None:
            require(t, name, dtype=torch.int64, ndim=1, numel=B, device=q.device)
    if (row_ptr is None) != (col_idx is None):
        raise ValueError("flash_attention: a block mask needs both block_row_ptr and block_col_idx")
    if row_ptr is not None:
        if block_q <= 0 or block_k <= 0 or block_q % 16 or block_k % 16:
            raise ValueError(f"flash_attention: block sizes must be positive multiples of 16, got {block_q} x {block_k}")
        if mask_batch not in (1, B) or mask_heads not in (1, hkv, hq):
            raise ValueError(f"flash_attention: block mask has batch {mask_batch} and heads {mask_heads}; expected "
                             f"batch 1 or {B}, heads 1, {hkv} or {hq}")
        q_blocks = -(-lq // block_q)
        require(row_ptr, "block_row_ptr", dtype=torch.int64, ndim=1, numel=mask_batch * mask_heads * q_blocks + 1,
                device=q.device)
        require(col_idx, "block_col_idx", dtype=torch.int32, ndim=1, device=q.device)
        # On CUDA reading the lists would synchronise: the kernel clamps and skips what is out of range.
        if q.device.type == "cpu" and (int(row_ptr[-1]) != col_idx.numel() or int(row_ptr[0]) != 0):
            raise ValueError(f"flash_attention: block_row_ptr must start at 0 and end at the {col_idx.numel()} "
                             f"listed blocks, got {int(row_ptr[0])} .. {int(row_ptr[-1])}")


def _head_dim_contiguous(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(3) == 1 or t.shape[3] == 1 else t.contiguous()


def _binding_args(q, k, v, out, lse, row_ptr, col_idx, block_q, block_k, mask_batch, mask_heads, kv_start, kv_end,
                  causal, window, sinks, scale, softcap, blasst_log_lambda) -> tuple:
    """The arguments both bindings (CPU and CUDA) take, as plain pointers and numbers."""
    mask = None
    if row_ptr is not None:
        lq, lk = q.shape[2], k.shape[2]
        mask = (block_q, block_k, mask_batch, mask_heads, -(-lq // block_q), -(-lk // block_k), row_ptr.data_ptr(),
                col_idx.data_ptr() if col_idx.numel() else 0, col_idx.numel())
    return (_tensor4(q), _tensor4(k), _tensor4(v), _tensor4(out), lse.data_ptr(), float(scale), float(softcap),
            bool(causal), int(window), int(sinks), kv_start.data_ptr() if kv_start is not None else 0,
            kv_end.data_ptr() if kv_end is not None else 0, float(blasst_log_lambda), mask)


def _run(q, k, v, row_ptr, col_idx, block_q, block_k, mask_batch, mask_heads, kv_start, kv_end, causal, window,
         sinks, scale, softcap, blasst_log_lambda):
    _check(q, k, v, row_ptr, col_idx, block_q, block_k, mask_batch, mask_heads, kv_start, kv_end, causal, window,
           sinks, scale, softcap, blasst_log_lambda)
    q, k, v = _head_dim_contiguous(q), _head_dim_contiguous(k), _head_dim_contiguous(v)
    B, hq, lq, d = q.shape
    out = torch.empty(B, hq, lq, d, dtype=q.dtype)
    lse = torch.empty(B, hq, lq, dtype=torch.float32)
    computed, skipped = _C.flash_attention(*_binding_args(q, k, v, out, lse, row_ptr, col_idx, block_q, block_k,
                                                          mask_batch, mask_heads, kv_start, kv_end, causal, window,
                                                          sinks, scale, softcap, blasst_log_lambda))
    return out, lse, torch.tensor([computed, skipped], dtype=torch.int64)


def _aligned(t: torch.Tensor) -> torch.Tensor:
    """The tensor as the CUDA kernel loads it: 16-byte rows (head dim contiguous, base and
    strides in multiples of 8 elements), copied only when it is not."""
    if t.stride(3) == 1 and t.data_ptr() % 16 == 0 and all(s % 8 == 0 for s in t.stride()[:3]):
        return t
    return t.contiguous()


CUDA_OPT_IN = "SPARSECORE_CUDA_ATTENTION"


def _run_cuda(q, k, v, row_ptr, col_idx, block_q, block_k, mask_batch, mask_heads, kv_start, kv_end, causal, window,
              sinks, scale, softcap, blasst_log_lambda):
    # The tensor-core kernel is compiled and its addressing is tested on the CPU, but it has
    # not run on a GPU in this release's checks: it serves only those who opt in (after
    # `python -m sparsecore.selftest` passed on their GPU), never a silent wrong answer.
    if os.environ.get(CUDA_OPT_IN) != "1":
        raise ValueError(f"flash_attention on CUDA: this release's tensor-core attention kernel has not been validated "
                         f"on a GPU yet; run `python -m sparsecore.selftest` on yours, then set {CUDA_OPT_IN}=1 to use "
                         "it (or move q, k and v to the CPU)")
    _check(q, k, v, row_ptr, col_idx, block_q, block_k, mask_batch, mask_heads, kv_start, kv_end, causal, window,
           sinks, scale, softcap, blasst_log_lambda)
    q, k, v = _aligned(q), _aligned(k), _aligned(v)
    B, hq, lq, d = q.shape
    out = torch.empty(B, hq, lq, d, dtype=q.dtype, device=q.device)
    lse = torch.empty(B, hq, lq, dtype=torch.float32, device=q.device)
    stats = torch.zeros(2, dtype=torch.int64, device=q.device)
    with on_device(q):
        _C.flash_attention_cuda(*_binding_args(q, k, v, out, lse, row_ptr, col_idx, block_q, block_k, mask_batch,
                                               mask_heads, kv_start, kv_end, causal, window, sinks, scale, softcap,
                                               blasst_log_lambda), stats.data_ptr(), stream_of(q))
    return out, lse, stats


def _fake(q, k, v, row_ptr, col_idx, block_q, block_k, mask_batch, mask_heads, kv_start, kv_end, causal, window,
          sinks, scale, softcap, blasst_log_lambda):
    B, hq, lq, d = q.shape
    return (q.new_empty(B, hq, lq, d), q.new_empty(B, hq, lq, dtype=torch.float32),
            q.new_empty(2, dtype=torch.int64))


torch.library.impl("sparsecore::flash_attention", "cpu", lib=lib)(_run)
torch.library.impl("sparsecore::flash_attention", "cuda", lib=lib)(_run_cuda)
torch.library.register_fake("sparsecore::flash_attention", lib=lib)(_fake)

# Quest page scores (sparsecore/attention.h): per (batch, KV head, page) the bound
# max_g sum_d max(q_gd kmin_pd, q_gd kmax_pd) over the group's q rows, fp32 [B, Hkv, pages].
lib.define("quest_page_scores(Tensor q, Tensor kmin, Tensor kmax) -> Tensor")


def _check_quest(q, kmin, kmax):
    for name, t in (("q", q), ("kmin", kmin), ("kmax", kmax)):
        require(t, name, dtype=VALUE_DTYPES, ndim=4, contiguous=False)
        if t.device.type != "cpu":
            raise ValueError(f"quest_page_scores: {name} is on {t.device}; Quest scoring runs on the CPU")
    if kmin.shape != kmax.shape or kmin.dtype != kmax.dtype:
        raise ValueError(f"quest_page_scores: kmin and kmax must match, got {tuple(kmin.shape)} {kmin.dtype} and "
                         f"{tuple(kmax.shape)} {kmax.dtype}")
    B, hq, _, d = q.shape
    if kmin.shape[0] != B or kmin.shape[3] != d:
        raise ValueError(f"quest_page_scores: bounds of shape {tuple(kmin.shape)} do not match q {tuple(q.shape)}")
    hkv = kmin.shape[1]
    if hq > 0 and (hkv == 0 or hq % hkv):
        raise ValueError(f"quest_page_scores: {hq} q heads are not a multiple of {hkv} KV heads")
    if not 1 <= d <= ATTN_MAX_DIM:
        raise ValueError(f"quest_page_scores: head dim {d} is not supported (1..{ATTN_MAX_DIM})")


@torch.library.impl("sparsecore::quest_page_scores", "cpu", lib=lib)
def _quest_run(q, kmin, kmax):
    _check_quest(q, kmin, kmax)
    q, kmin, kmax = _head_dim_contiguous(q), _head_dim_contiguous(kmin), _head_dim_contiguous(kmax)
    scores = torch.empty(kmin.shape[:3], dtype=torch.float32)
    _C.quest_page_scores(_tensor4(q), _tensor4(kmin), _tensor4(kmax), scores.data_ptr())
    return scores


@torch.library.register_fake("sparsecore::quest_page_scores", lib=lib)
def _quest_fake(q, kmin, kmax):
    return kmin.new_empty(kmin.shape[:3], dtype=torch.float32)

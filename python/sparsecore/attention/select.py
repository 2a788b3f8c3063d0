"""Dynamic block selection for prefill: which KV blocks each q block is worth computing.

Both estimators look at the actual q and k of the call and return a :class:`BlockMask`;
their cost is small next to the attention they prune (it is counted in every benchmark).

- :func:`topk_blocks` (FlexPrefill / XAttention style): mean-pool q and k per block, score
  the block grid, and keep per q block the ``keep`` fraction of its causal blocks (or the
  ``topk`` best, or the smallest set whose softmax mass reaches ``tau``).
- :func:`vertical_slash_blocks` (MInference): the last queries' attention estimates which
  key columns (vertical lines) and which diagonals (slash lines) matter; the blocks those
  lines cross are kept.

Both always keep the blocks on the diagonal, the first ``sink_blocks`` blocks and
``local_blocks`` blocks before the diagonal.
"""

from __future__ import annotations

import math

import torch

from .mask import BlockMask, _ceil_div


def _pool(x: torch.Tensor, block: int) -> torch.Tensor:
    """Mean over blocks of ``block`` rows along dim 2 (the last block over its real rows)."""
    B, H, L, D = x.shape
    nb = _ceil_div(L, block)
    pad = nb * block - L
    xf = x.float()
    if pad:
        xf = torch.nn.functional.pad(xf, (0, 0, 0, pad))
    sums = xf.view(B, H, nb, block, D).sum(3)
    counts = torch.full((nb,), float(block))
    counts[-1] = block - pad
    return sums / counts[None, None, :, None]


def _block_positions(q_len: int, kv_len: int, block_q: int, block_k: int):
    offset = kv_len - q_len
    qb, kb = _ceil_div(q_len, block_q), _ceil_div(kv_len, block_k)
    first = torch.arange(qb) * block_q + offset
    last = torch.clamp(torch.arange(qb) * block_q + block_q - 1, max=q_len - 1) + offset
    k_first = torch.arange(kb) * block_k
    return first, last, k_first


def _forced(q_len: int, kv_len: int, block_q: int, block_k: int, sink_blocks: int, local_blocks: int) -> torch.Tensor:
    """Diagonal, sink and local blocks: [q blocks, KV blocks] bool."""
    first, last, k_first = _block_positions(q_len, kv_len, block_q, block_k)
    kb = k_first.numel()
    kidx = torch.arange(kb)[None, :]
    diag_lo = (first // block_k)[:, None] - local_blocks
    diag_hi = (last // block_k)[:, None]
    return ((kidx >= diag_lo) & (kidx <= diag_hi)) | (kidx < sink_blocks)


def _causal_blocks(q_len: int, kv_len: int, block_q: int, block_k: int) -> torch.Tensor:
    _first, last, k_first = _block_positions(q_len, kv_len, block_q, block_k)
    return k_first[None, :] <= last[:, None]


def _group_heads(x: torch.Tensor, heads_out: int) -> torch.Tensor:
    """Average a [B, Hq, ...] tensor over the q heads of each KV head ([B, Hkv, ...])."""
    B, hq = x.shape[:2]
    return x.view(B, heads_out, hq // heads_out, *x.shape[2:]).mean(2)


def _check_qk(q: torch.Tensor, k: torch.Tensor) -> None:
    if not isinstance(q, torch.Tensor) or not isinstance(k, torch.Tensor) or q.dim() != 4 or k.dim() != 4:
        raise ValueError("q and k must be 4-D tensors [batch, heads, length, head_dim]")
    if q.shape[0] != k.shape[0] or q.shape[3] != k.shape[3] or k.shape[1] == 0 or q.shape[1] % k.shape[1]:
        raise ValueError(f"q {tuple(q.shape)} and k {tuple(k.shape)} do not form an attention")
    if q.shape[2] > k.shape[2]:
        raise ValueError(f"causal block selection needs q_len <= kv_len, got {q.shape[2]} > {k.shape[2]}")


def topk_blocks(q: torch.Tensor, k: torch.Tensor, *, block: int = 64, keep: float | None = 0.1,
                topk: int | None = None, tau: float | None = None, sink_blocks: int = 1, local_blocks: int = 1,
                per: str = "kv_head", scale: float | None = None) -> BlockMask:
    """Causal block mask keeping, per q block, the blocks whose pooled score is highest.

    ``keep``: the fraction of each q block's causal blocks to keep (at least one);
    ``topk``: a fixed number instead; ``tau``: the smallest set whose softmax mass over the
    pooled scores reaches ``tau`` (0 < tau <= 1). ``per="kv_head"`` (default) shares one
    selection across the q heads of a GQA group (each K/V tile is then read once for the
    group), ``per="q_head"`` selects per q head.
    """
    _check_qk(q, k)
    if sum(x is not None for x in (keep, topk, tau)) == 0:
        raise ValueError("give keep, topk or tau")
    if tau is not None and not 0 < tau <= 1:
        raise ValueError(f"tau must be in (0, 1], got {tau}")
    if keep is not None and tau is None and topk is None and not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    if topk is not None and topk < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")
    if per not in ("kv_head", "q_head"):
        raise ValueError(f"per must be 'kv_head' or 'q_head', got {per!r}")
    if sink_blocks < 0 or local_blocks < 0:
        raise ValueError("sink_blocks and local_blocks must be >= 0")
    B, hq, lq, d = q.shape
    hkv, lk = k.shape[1], k.shape[2]
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    qp = _pool(q, block)                                      # [B, Hq, qb, D]
    kp = _pool(k, block).repeat_interleave(hq // hkv, dim=1)  # [B, Hq, kb, D]
    scores = torch.einsum("bhqd,bhkd->bhqk", qp, kp) * scale
    causal = _causal_blocks(lq, lk, block, block)
    scores = scores.masked_fill(~causal, -math.inf)
    probs = scores.softmax(-1)
    if per == "kv_head":
        probs = _group_heads(probs, hkv)
    heads = probs.shape[1]
    kb = probs.shape[-1]
    order = probs.argsort(-1, descending=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(-1, order, torch.arange(kb).expand_as(order).contiguous())
    if tau is not None:
        sorted_p = probs.gather(-1, order)
        before = sorted_p.cumsum(-1) - sorted_p                 # mass of the better blocks
        n_keep = (before < tau).sum(-1, keepdim=True)          # smallest prefix reaching tau
    else:
        n_row = causal.sum(-1).view(1, 1, -1, 1)
        n_keep = torch.full_like(n_row, topk) if topk is not None else torch.ceil(n_row * keep).long()
        n_keep = torch.clamp(n_keep, min=1)
    chosen = (ranks < n_keep) & causal
    chosen |= _forced(lq, lk, block, block, sink_blocks, local_blocks) & causal
    return BlockMask.from_dense(chosen, q_len=lq, kv_len=lk, block_q=block, block_k=block)._with_heads(heads, B)


def vertical_slash_blocks(q: torch.Tensor, k: torch.Tensor, *, block: int = 64, last_q: int = 64,
                          vertical: float = 0.05, slash: float = 0.05, sink_blocks: int = 1, local_blocks: int = 1,
                          per: str = "kv_head", scale: float | None = None) -> BlockMask:
    """MInference's vertical-slash pattern at block granularity.

    The last ``last_q`` queries attend to every key; the ``vertical`` fraction of key
    columns and the ``slash`` fraction of diagonals (offsets ``position - key``) with the
    most attention mass are kept, and every block they cross is computed.
    """
    _check_qk(q, k)
    if not (0 < vertical <= 1 and 0 < slash <= 1):
        raise ValueError(f"vertical and slash must be in (0, 1], got {vertical} and {slash}")
    if per not in ("kv_head", "q_head"):
        raise ValueError(f"per must be 'kv_head' or 'q_head', got {per!r}")
    B, hq, lq, d = q.shape
    hkv, lk = k.shape[1], k.shape[2]
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    n_last = min(last_q, lq)
    q_last = q[:, :, lq - n_last:].float()
    kf = k.float().repeat_interleave(hq // hkv, dim=1)
    att = torch.einsum("bhqd,bhkd->bhqk", q_last, kf) * scale       # [B, Hq, n_last, Lk]
    pos = torch.arange(lk - n_last, lk)                               # positions of the last queries
    keys = torch.arange(lk)
    visible = keys[None, :] <= pos[:, None]
    att = att.masked_fill(~visible, -math.inf).softmax(-1)
    if per == "kv_head":
        att = _group_heads(att, hkv)
    heads = att.shape[1]
    col_score = att.sum(2)                                            # [B, H, Lk]
    offsets = (pos[:, None] - keys[None, :]).clamp(min=0)             # [n_last, Lk]
    diag_score = torch.zeros(B, heads, lk).scatter_add_(
        2, offsets.reshape(1, 1, -1).expand(B, heads, -1), att.reshape(B, heads, -1))
    n_v = max(1, int(math.ceil(vertical * lk)))
    n_s = max(1, int(math.ceil(slash * lk)))
    cols = col_score.topk(n_v, dim=-1).indices                        # [B, H, n_v]
    diags = diag_score.topk(n_s, dim=-1).indices                      # [B, H, n_s]
    qb, kb = _ceil_div(lq, block), _ceil_div(lk, block)
    first, last, _k_first = _block_positions(lq, lk, block, block)
    chosen = torch.zeros(B, heads, qb, kb, dtype=torch.bool)
    col_blocks = torch.zeros(B, heads, kb, dtype=torch.bool)
    col_blocks.scatter_(2, cols // block, True)
    chosen |= col_blocks[:, :, None, :]
    # A diagonal at offset o crosses, in q block qb, the keys [first - o, last - o].
    lo = ((first[None, None, :, None] - diags[:, :, None, :]).clamp(min=0) // block)  # [B, H, qb, n_s]
    hi = ((last[None, None, :, None] - diags[:, :, None, :]).clamp(min=0) // block)
    span = _ceil_div(block, block) + 1
    for step in range(span):
        idx = torch.minimum(lo + step, hi).clamp(max=kb - 1)
        chosen.scatter_(3, idx, True)
    causal = _causal_blocks(lq, lk, block, block)
    chosen &= causal
    chosen |= _forced(lq, lk, block, block, sink_blocks, local_blocks) & causal
    return BlockMask.from_dense(chosen, q_len=lq, kv_len=lk, block_q=block, block_k=block)._with_heads(heads, B)

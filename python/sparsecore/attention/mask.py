"""BlockMask: which KV blocks each q block computes, validated once and reused (plan/run).

The kernel walks, for every (batch, head, q block), a sorted list of KV block indices;
blocks not listed are never read. Lists are stored as CSR over the rows
``(batch, head, q block)`` (``row_ptr`` int64, ``col_idx`` int32). A mask can be shared by
every batch element (``batch == 1``) and every head (``heads == 1``), be one per KV head
(the GQA group shares it: each K/V tile is loaded once for the group) or one per q head.

Positions: q row ``i`` sits at key position ``kv_len - q_len + i``; q blocks cut the
``q_len`` query rows, KV blocks the ``kv_len`` keys. The position rules of the call
(causal, window, padding) still apply inside listed blocks, so a mask can only remove
work, never unmask a key the rules hide.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True, eq=False)
class BlockMask:
    row_ptr: torch.Tensor
    col_idx: torch.Tensor
    q_len: int
    kv_len: int
    block_q: int = 64
    block_k: int = 64
    batch: int = 1
    heads: int = 1

    def __post_init__(self):
        for name in ("q_len", "kv_len", "block_q", "block_k", "batch", "heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"BlockMask.{name} must be an int, got {type(value).__name__}")
        if self.q_len < 0 or self.kv_len < 0:
            raise ValueError(f"BlockMask lengths must be >= 0, got q_len={self.q_len}, kv_len={self.kv_len}")
        if self.block_q <= 0 or self.block_k <= 0 or self.block_q % 16 or self.block_k % 16:
            raise ValueError(f"block sizes must be positive multiples of 16, got {self.block_q} x {self.block_k}")
        if self.batch < 1 or self.heads < 1:
            raise ValueError(f"BlockMask batch and heads must be >= 1, got {self.batch} and {self.heads}")
        for name, t, dtype in (("row_ptr", self.row_ptr, torch.int64), ("col_idx", self.col_idx, torch.int32)):
            if not isinstance(t, torch.Tensor) or t.layout != torch.strided:
                raise TypeError(f"BlockMask.{name} must be a dense torch.Tensor")
            if t.dtype != dtype or t.dim() != 1 or t.device.type != "cpu" or not t.is_contiguous():
                raise ValueError(f"BlockMask.{name} must be a contiguous 1-D {dtype} CPU tensor, got {t.dtype} "
                                 f"of shape {tuple(t.shape)} on {t.device}")
        rows = self.batch * self.heads * self.q_blocks
        if self.row_ptr.numel() != rows + 1:
            raise ValueError(f"BlockMask.row_ptr must have {rows + 1} entries (batch x heads x q blocks + 1), "
                             f"got {self.row_ptr.numel()}")
        counts = self.row_ptr.diff()
        if int(self.row_ptr[0]) != 0 or int(self.row_ptr[-1]) != self.col_idx.numel() or bool((counts < 0).any()):
            raise ValueError("BlockMask.row_ptr must rise from 0 to the number of listed blocks")
        if self.col_idx.numel():
            if int(self.col_idx.min()) < 0 or int(self.col_idx.max()) >= self.k_blocks:
                raise ValueError(f"BlockMask.col_idx holds a block outside [0, {self.k_blocks})")
            # Strictly ascending within each row: every step up, except where a row starts.
            steps = self.col_idx[1:] - self.col_idx[:-1]
            row_start = torch.zeros(self.col_idx.numel(), dtype=torch.bool)
            starts = self.row_ptr[1:-1]
            row_start[starts[starts < self.col_idx.numel()]] = True
            if bool(((steps <= 0) & ~row_start[1:]).any()):
                raise ValueError("BlockMask.col_idx must be strictly ascending within each q block")

    @classmethod
    def _unchecked(cls, row_ptr, col_idx, q_len, kv_len, block_q, block_k, batch, heads) -> "BlockMask":
        """A mask built by sparsecore's own estimators, whose lists are sorted and in range by
        construction: skips the O(nnz) validation (the kernel still checks every index it reads)."""
        mask = object.__new__(cls)
        for name, value in (("row_ptr", row_ptr), ("col_idx", col_idx), ("q_len", q_len), ("kv_len", kv_len),
                            ("block_q", block_q), ("block_k", block_k), ("batch", batch), ("heads", heads)):
            object.__setattr__(mask, name, value)
        return mask

    def lists_on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """``(row_ptr, col_idx)`` on ``device``: the CPU tensors, or copies made once per device
        and kept (plan once, run many times; a copy is queued on the current stream)."""
        device = torch.device(device)
        if device.type == "cpu":
            return self.row_ptr, self.col_idx
        cache = self.__dict__.setdefault("_device_lists", {})
        if device not in cache:
            cache[device] = (self.row_ptr.to(device, non_blocking=True), self.col_idx.to(device, non_blocking=True))
        return cache[device]

    @property
    def q_blocks(self) -> int:
        return _ceil_div(self.q_len, self.block_q)

    @property
    def k_blocks(self) -> int:
        return _ceil_div(self.kv_len, self.block_k)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(batch, heads, q blocks, KV blocks) of the block grid."""
        return (self.batch, self.heads, self.q_blocks, self.k_blocks)

    @property
    def nnz(self) -> int:
        return self.col_idx.numel()

    def density(self) -> float:
        """Listed blocks over all blocks of the grid (before the causal rule)."""
        total = self.batch * self.heads * self.q_blocks * self.k_blocks
        return self.nnz / total if total else 0.0

    def to_dense(self) -> torch.Tensor:
        """The block grid as a bool tensor ``[batch, heads, q blocks, KV blocks]``."""
        dense = torch.zeros(self.batch * self.heads * self.q_blocks, self.k_blocks, dtype=torch.bool)
        rows = torch.repeat_interleave(torch.arange(dense.shape[0]), self.row_ptr.diff())
        dense[rows, self.col_idx.long()] = True
        return dense.view(self.shape)

    def _with_heads(self, heads: int, batch: int) -> "BlockMask":
        if (self.heads, self.batch) != (heads, batch):
            raise ValueError(f"block grid has batch {self.batch} and heads {self.heads}, expected {batch} and {heads}")
        return self

    def matches(self, q_len: int, kv_len: int) -> bool:
        return self.q_len == q_len and self.kv_len == kv_len

    # ----------------------------------------------------------------------------- builders
    @classmethod
    def from_dense(cls, blocks: torch.Tensor, *, q_len: int, kv_len: int, block_q: int = 64,
                   block_k: int = 64) -> "BlockMask":
        """From a bool block grid ``[q blocks, KV blocks]``, ``[heads, ...]`` or ``[batch, heads, ...]``."""
        if not isinstance(blocks, torch.Tensor) or blocks.dtype != torch.bool:
            raise TypeError("blocks must be a bool torch.Tensor")
        if blocks.dim() not in (2, 3, 4):
            raise ValueError(f"blocks must be 2-D, 3-D or 4-D, got shape {tuple(blocks.shape)}")
        while blocks.dim() < 4:
            blocks = blocks.unsqueeze(0)
        b, h, qb, kb = blocks.shape
        if qb != _ceil_div(q_len, block_q) or kb != _ceil_div(kv_len, block_k):
            raise ValueError(f"a {q_len} x {kv_len} attention in {block_q} x {block_k} blocks has a "
                             f"{_ceil_div(q_len, block_q)} x {_ceil_div(kv_len, block_k)} grid, got {qb} x {kb}")
        flat = blocks.reshape(b * h * qb, kb).cpu()
        counts = flat.sum(1)
        row_ptr = torch.zeros(flat.shape[0] + 1, dtype=torch.int64)
        torch.cumsum(counts, 0, out=row_ptr[1:])
        col_idx = flat.nonzero()[:, 1].to(torch.int32).contiguous()
        return cls(row_ptr, col_idx, q_len, kv_len, block_q, block_k, b, h)

    @classmethod
    def full(cls, q_len: int, kv_len: int, *, block_q: int = 64, block_k: int = 64) -> "BlockMask":
        return cls.from_dense(torch.ones(_ceil_div(q_len, block_q), _ceil_div(kv_len, block_k), dtype=torch.bool),
                              q_len=q_len, kv_len=kv_len, block_q=block_q, block_k=block_k)

    @classmethod
    def causal(cls, q_len: int, kv_len: int, *, block_q: int = 64, block_k: int = 64) -> "BlockMask":
        """Blocks on or below the diagonal (q rows at positions ``kv_len - q_len + i``)."""
        return cls.sliding_window(q_len, kv_len, None, block_q=block_q, block_k=block_k)

    @classmethod
    def sliding_window(cls, q_len: int, kv_len: int, window: int | None, *, sinks: int = 0, block_q: int = 64,
                       block_k: int = 64) -> "BlockMask":
        """Blocks a causal sliding window of ``window`` keys (plus ``sinks`` first keys) touches."""
        if window is not None and window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if sinks < 0:
            raise ValueError(f"sinks must be >= 0, got {sinks}")
        qb, kb = _ceil_div(q_len, block_q), _ceil_div(kv_len, block_k)
        offset = kv_len - q_len
        first_pos = torch.arange(qb) * block_q + offset                          # first row's position
        last_pos = torch.clamp(torch.arange(qb) * block_q + block_q - 1, max=q_len - 1) + offset
        k_first = torch.arange(kb) * block_k
        k_last = torch.clamp(k_first + block_k - 1, max=kv_len - 1)
        keep = k_first[None, :] <= last_pos[:, None]
        if window is not None:
            in_window = k_last[None, :] > first_pos[:, None] - window
            sink = k_first[None, :] < sinks
            keep &= in_window | sink
        return cls.from_dense(keep, q_len=q_len, kv_len=kv_len, block_q=block_q, block_k=block_k)

    @classmethod
    def streaming(cls, q_len: int, kv_len: int, *, window: int, sinks: int = 4, block_q: int = 64,
                  block_k: int = 64) -> "BlockMask":
        """StreamingLLM: the attention sinks plus a local window."""
        return cls.sliding_window(q_len, kv_len, window, sinks=sinks, block_q=block_q, block_k=block_k)

    @classmethod
    def from_flex(cls, flex_mask, *, q_len: int | None = None, kv_len: int | None = None) -> "BlockMask":
        """From a FlexAttention ``BlockMask`` (``torch.nn.attention.flex_attention``): its full and
        partial blocks are the listed blocks (the element mask_mod is not carried over: use the
        position rules of :func:`flash_attention` for causal and windows)."""
        try:
            kv_num, kv_idx = flex_mask.kv_num_blocks, flex_mask.kv_indices
            block_q, block_k = flex_mask.BLOCK_SIZE
            seq_q, seq_k = flex_mask.seq_lengths
        except AttributeError:
            raise TypeError("from_flex expects a torch.nn.attention.flex_attention.BlockMask") from None
        q_len = seq_q if q_len is None else q_len
        kv_len = seq_k if kv_len is None else kv_len
        b, h, qb = kv_num.shape
        kb = _ceil_div(kv_len, block_k)
        dense = torch.zeros(b, h, qb, kb, dtype=torch.bool)
        counts = [kv_num]
        indices = [kv_idx]
        if getattr(flex_mask, "full_kv_num_blocks", None) is not None:
            counts.append(flex_mask.full_kv_num_blocks)
            indices.append(flex_mask.full_kv_indices)
        for num, idx in zip(counts, indices):
            num, idx = num.cpu(), idx.cpu()
            valid = torch.arange(idx.shape[-1])[None, None, None, :] < num[..., None]
            b_i, h_i, q_i, w_i = valid.nonzero(as_tuple=True)
            blocks = idx[b_i, h_i, q_i, w_i].long()
            if blocks.numel() and (int(blocks.min()) < 0 or int(blocks.max()) >= kb):
                raise ValueError(f"the FlexAttention mask lists a KV block outside [0, {kb})")
            dense[b_i, h_i, q_i, blocks] = True
        return cls.from_dense(dense[:, :, :_ceil_div(q_len, block_q)], q_len=q_len, kv_len=kv_len,
                              block_q=int(block_q), block_k=int(block_k))

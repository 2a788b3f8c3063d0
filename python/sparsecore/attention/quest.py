"""Quest (Tang et al., 2024): query-aware page selection for sparse decode.

Per page of ``page_size`` keys and KV head, the channel-wise min and max of K bound every
score in the page: ``q . k <= sum_i max(q_i min_i, q_i max_i)``. Each decode step scores
every page by that bound, keeps the best pages within a token budget (plus the first page,
the attention sink, and the newest page) and runs block-sparse decode over them.

:class:`QuestCache` is a ``transformers`` ``DynamicCache`` that keeps the page bounds up
to date as tokens are appended, so ``model.generate(past_key_values=QuestCache())``
maintains them at the cost of the new tokens only. Without it the bounds are computed
from the whole key cache at every step (correct, but it reads K once more).
"""

from __future__ import annotations

import torch

from .mask import BlockMask, _ceil_div

try:
    from transformers import DynamicCache
except ImportError:  # transformers is optional for the kernel-level API
    DynamicCache = object


class PageBounds:
    """Channel-wise min/max of K per page: ``kmin``, ``kmax`` [B, Hkv, pages, D] float32 over ``length`` keys."""

    def __init__(self, page_size: int):
        if page_size < 16 or page_size % 16:
            raise ValueError(f"page_size must be a positive multiple of 16, got {page_size}")
        self.page_size = page_size
        self.kmin = self.kmax = None
        self.length = 0

    def update(self, keys: torch.Tensor) -> "PageBounds":
        """Brings the bounds up to date with ``keys`` [B, Hkv, L, D]: only the pages the new keys touch."""
        B, H, L, D = keys.shape
        P = self.page_size
        fresh = (self.kmin is None or L < self.length or self.kmin.shape[:2] != (B, H)
                 or self.kmin.shape[3] != D)
        first_page = 0 if fresh else self.length // P
        pages = _ceil_div(L, P)
        if fresh:
            self.kmin = torch.empty(B, H, 0, D)
            self.kmax = torch.empty(B, H, 0, D)
        tail = keys[:, :, first_page * P:].float()
        n = tail.shape[2]
        if n:
            pad = _ceil_div(n, P) * P - n
            lo = torch.nn.functional.pad(tail, (0, 0, 0, pad), value=float("inf")).view(B, H, -1, P, D).amin(3)
            hi = torch.nn.functional.pad(tail, (0, 0, 0, pad), value=float("-inf")).view(B, H, -1, P, D).amax(3)
            self.kmin = torch.cat([self.kmin[:, :, :first_page], lo], 2)
            self.kmax = torch.cat([self.kmax[:, :, :first_page], hi], 2)
        self.length = L
        assert self.kmin.shape[2] == pages
        return self


def page_scores(q: torch.Tensor, bounds: PageBounds) -> torch.Tensor:
    """Quest's upper bound of ``q . k`` per page, the max over the q rows and the q heads of
    each KV head: [B, Hkv, pages]."""
    B, hq, lq, D = q.shape
    hkv = bounds.kmin.shape[1]
    qg = q.float().reshape(B, hkv, (hq // hkv) * lq, D)
    # Reads the fp32 bounds once per step: 1/8 of a bf16 cache's K/V bytes at 16-key pages.
    bound = qg.clamp(min=0) @ bounds.kmax.transpose(2, 3) + qg.clamp(max=0) @ bounds.kmin.transpose(2, 3)
    return bound.amax(2)


def quest_block_mask(q: torch.Tensor, keys: torch.Tensor, bounds: PageBounds, budget: int) -> BlockMask | None:
    """The pages a decode step computes under a ``budget`` of keys, as a per-KV-head
    block mask (None when the budget covers every page)."""
    B, hq, lq, D = q.shape
    L = keys.shape[2]
    P = bounds.page_size
    pages = _ceil_div(L, P)
    n_keep = max(2, budget // P)
    if n_keep >= pages:
        return None
    scores = page_scores(q, bounds)
    # The sink page and the newest page(s) (those holding the queries) are always kept.
    first_query_page = (L - lq) // P
    scores[:, :, 0] = float("inf")
    scores[:, :, first_query_page:] = float("inf")
    n_keep = max(n_keep, 1 + pages - first_query_page)
    chosen = scores.topk(n_keep, dim=-1).indices.sort(-1).values.to(torch.int32)
    hkv = chosen.shape[1]
    row_ptr = torch.arange(B * hkv + 1, dtype=torch.int64) * n_keep
    block_q = _ceil_div(lq, 16) * 16
    return BlockMask._unchecked(row_ptr, chosen.reshape(-1).contiguous(), lq, L, block_q, P, B, hkv)


class QuestCache(DynamicCache):
    """A ``transformers`` ``DynamicCache`` that also keeps Quest's page bounds of every layer.

    >>> from sparsecore.attention import QuestCache
    >>> cache = QuestCache(page_size=16)
    """

    def __init__(self, *args, page_size: int = 16, **kwargs):
        if DynamicCache is object:
            raise ImportError("QuestCache needs transformers")
        super().__init__(*args, **kwargs)
        PageBounds(page_size)  # validates page_size
        self.page_size = page_size
        self._bounds: dict[int, PageBounds] = {}

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        keys, values = super().update(key_states, value_states, layer_idx, *args, **kwargs)
        bounds = self._bounds.setdefault(layer_idx, PageBounds(self.page_size)).update(keys)
        # The attention call receives exactly this tensor: the bounds travel with it.
        keys._sparsecore_page_bounds = bounds
        return keys, values


def bounds_for(keys: torch.Tensor, page_size: int) -> PageBounds:
    """The page bounds a QuestCache attached to ``keys``, or bounds computed from ``keys`` now."""
    bounds = getattr(keys, "_sparsecore_page_bounds", None)
    if bounds is not None and bounds.page_size == page_size and bounds.length == keys.shape[2]:
        return bounds
    return PageBounds(page_size).update(keys)

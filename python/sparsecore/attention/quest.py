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

from .kv_cache import DynamicCache, GrowingCache


class PageBounds:
    """Channel-wise min/max of K per page: ``kmin``, ``kmax`` [B, Hkv, pages, D] over ``length`` keys.

    The bounds are kept in the keys' dtype: the min and max of bf16 (fp16) values are bf16
    (fp16) values, so nothing is rounded, and a step reads 2 x D elements per page, 1/8 of the
    page's K and V at 16-key pages. Storage grows by doubling and an update writes only the
    pages the new keys touch (one page per decode step), never copying the others.
    """

    def __init__(self, page_size: int):
        if page_size < 16 or page_size % 16:
            raise ValueError(f"page_size must be a positive multiple of 16, got {page_size}")
        self.page_size = page_size
        self._min = self._max = None  # [B, Hkv, capacity, D]
        self.pages = 0
        self.length = 0

    @property
    def kmin(self) -> torch.Tensor | None:
        return None if self._min is None else self._min[:, :, :self.pages]

    @property
    def kmax(self) -> torch.Tensor | None:
        return None if self._max is None else self._max[:, :, :self.pages]

    def update(self, keys: torch.Tensor) -> "PageBounds":
        """Brings the bounds up to date with ``keys`` [B, Hkv, L, D]: only the pages the new keys touch."""
        B, H, L, D = keys.shape
        P = self.page_size
        fresh = (self._min is None or L < self.length or self._min.shape[:2] != (B, H)
                 or self._min.shape[3] != D or self._min.dtype != keys.dtype or self._min.device != keys.device)
        first_page = 0 if fresh else self.length // P
        pages = _ceil_div(L, P)
        if fresh or pages > self._min.shape[2]:
            capacity = max(pages, 64 if fresh else 2 * self._min.shape[2])
            grown = [keys.new_empty(B, H, capacity, D) for _ in range(2)]
            if not fresh:
                grown[0][:, :, :first_page] = self._min[:, :, :first_page]
                grown[1][:, :, :first_page] = self._max[:, :, :first_page]
            self._min, self._max = grown
        tail = keys[:, :, first_page * P:]
        full = tail.shape[2] // P
        if full:
            whole = tail[:, :, :full * P].reshape(B, H, full, P, D)
            self._min[:, :, first_page:first_page + full] = whole.amin(3)
            self._max[:, :, first_page:first_page + full] = whole.amax(3)
        if tail.shape[2] > full * P:  # the newest page, partly filled
            rest = tail[:, :, full * P:]
            self._min[:, :, pages - 1] = rest.amin(2)
            self._max[:, :, pages - 1] = rest.amax(2)
        self.pages, self.length = pages, L
        return self


def page_scores(q: torch.Tensor, bounds: PageBounds) -> torch.Tensor:
    """Quest's upper bound of ``q . k`` per page, the max over the q rows and the q heads of
    each KV head: [B, Hkv, pages] float32 (the native ``sparsecore::quest_page_scores``: one
    pass over the bounds for the whole group, two FMAs per element)."""
    if q.device.type != "cpu":
        # No device kernel yet: the same bound as two batched matmuls.
        B, hq, lq, D = q.shape
        qg = q.float().reshape(B, bounds.kmin.shape[1], -1, D)
        bound = (qg.clamp(min=0) @ bounds.kmax.float().transpose(2, 3)
                 + qg.clamp(max=0) @ bounds.kmin.float().transpose(2, 3))
        return bound.amax(2)
    return torch.ops.sparsecore.quest_page_scores(q, bounds.kmin, bounds.kmax)


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
    # Unsorted top-k, then the indices sorted: 7x cheaper than a sorted top-k at 2k pages.
    chosen = scores.topk(n_keep, dim=-1, sorted=False).indices.to(torch.int32).sort(-1).values.cpu()
    hkv = chosen.shape[1]
    row_ptr = torch.arange(B * hkv + 1, dtype=torch.int64) * n_keep
    block_q = _ceil_div(lq, 16) * 16
    return BlockMask._unchecked(row_ptr, chosen.reshape(-1).contiguous(), lq, L, block_q, P, B, hkv)


class QuestCache(GrowingCache):
    """A ``transformers`` ``DynamicCache`` (appending in place, as :class:`GrowingCache`) that
    also keeps Quest's page bounds of every layer.

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

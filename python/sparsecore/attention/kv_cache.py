"""A KV cache that appends in place.

``transformers``' ``DynamicCache`` appends each decode step's keys and values with
``torch.cat``, which copies the whole cache of every layer every step: after a 512-token
prompt that is 5.8 ms of a 48 ms SmolLM2 decode step on this machine (``sparsecore eval
--profile``), and it grows with the context. ``StaticCache`` avoids the copy but makes
attention run over its full preallocated length behind a mask. :class:`GrowingCache` keeps
each layer's keys and values in a buffer with room to spare (grown by half when full, so
appends cost amortised O(1) copies; at most 256 tokens or a third of it unused) and hands
attention a view of exactly the filled length: no copy, no mask, no length chosen in
advance. It is a ``DynamicCache`` in every other respect (``generate()``, cropping, beam reordering, offloading), so dense and sparse
models, HF attention and sparsecore attention all use it unchanged.

>>> from sparsecore import GrowingCache
>>> cache = GrowingCache()
"""

from __future__ import annotations

import torch

try:
    from transformers.cache_utils import DynamicCache, DynamicLayer
except ImportError:  # transformers is optional for the kernels
    DynamicCache = DynamicLayer = object

# Room left when a buffer is (re)allocated: half the old capacity, and never fewer than this
# many tokens (so a prompt's cache has room for the decode steps that follow it).
_MIN_GROWTH = 256


class GrowingLayer(DynamicLayer):
    """One layer's keys and values in ``[batch, heads, capacity, head_dim]`` buffers; ``keys``
    and ``values`` are views of the filled ``[:, :, :length]``."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._store = self._views = None

    def _adopt_current(self) -> int:
        """The filled length, after taking ``keys``/``values`` into fresh buffers if something
        outside replaced them (crop, beam reordering, offloading, reset)."""
        if self._views is not None and self.keys is self._views[0] and self.values is self._views[1]:
            return self.keys.shape[-2]
        self._store = self._views = None
        if self.keys is None or self.keys.dim() < 3 or self.keys.shape[-2] == 0:
            return 0
        self._store = (self.keys.clone(), self.values.clone())
        return self.keys.shape[-2]

    def _reserve(self, needed: int, like_k: torch.Tensor, like_v: torch.Tensor, filled: int) -> None:
        capacity = self._store[0].shape[-2] if self._store is not None else 0
        if needed <= capacity:
            return
        capacity = needed + max(capacity // 2, _MIN_GROWTH)
        new = tuple(torch.empty(*t.shape[:-2], capacity, t.shape[-1], dtype=t.dtype, device=t.device)
                    for t in (like_k, like_v))
        if filled:
            new[0][..., :filled, :].copy_(self._store[0][..., :filled, :])
            new[1][..., :filled, :].copy_(self._store[1][..., :filled, :])
        self._store = new

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        filled = self._adopt_current()
        if self._store is not None and (self._store[0].shape[:-2] != key_states.shape[:-2]
                                          or self._store[1].shape[:-2] != value_states.shape[:-2]):
            raise ValueError(f"GrowingCache: new keys/values of shape {tuple(key_states.shape)}/"
                             f"{tuple(value_states.shape)} do not match the cached "
                             f"{tuple(self._store[0].shape[:-2])} batch and heads")
        end = filled + key_states.shape[-2]
        self._reserve(end, key_states, value_states, filled)
        k_buf, v_buf = self._store
        k_buf[..., filled:end, :].copy_(key_states)
        v_buf[..., filled:end, :].copy_(value_states)
        self.keys, self.values = k_buf[..., :end, :], v_buf[..., :end, :]
        self._views = (self.keys, self.values)
        return self.keys, self.values

    def reset(self) -> None:
        self._store = self._views = None
        super().reset()


class GrowingCache(DynamicCache):
    """A ``DynamicCache`` whose full-attention layers are :class:`GrowingLayer` (sliding-window
    layers keep transformers' own bounded layer). Pass it to ``generate(past_key_values=...)``
    or to a forward call as ``past_key_values``; it takes ``DynamicCache``'s arguments."""

    def __init__(self, *args, **kwargs):
        if DynamicCache is object:
            raise ImportError("GrowingCache needs transformers")
        super().__init__(*args, **kwargs)
        for i, layer in enumerate(self.layers):
            if type(layer) is DynamicLayer:
                grown = GrowingLayer()
                if layer.is_initialized and layer.keys is not None and layer.keys.numel():
                    grown.update(layer.keys, layer.values)
                self.layers[i] = grown
        if self.layer_class_to_replicate is DynamicLayer:
            self.layer_class_to_replicate = GrowingLayer

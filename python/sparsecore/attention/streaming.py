"""StreamingLLM's bounded KV cache for sliding-window attention with sinks.

With a window of ``W`` keys and ``S`` sinks no later query can see a key that is neither
among the first ``S`` nor among the last ``W - 1``; :class:`StreamingCache` evicts them
after every update, so the cache holds at most ``S + W - 1`` tokens however long the
generation runs. The kept keys are the sinks followed by a contiguous suffix, so the
kernel's index-based rules (query at ``Lk - Lq + i``, window over indices, sinks at the
front) give exactly the attention of the unbounded cache. RoPE positions come from the
count of tokens seen (``get_seq_length``), not from the cache length.
"""

from __future__ import annotations

import torch

try:
    from transformers.cache_utils import Cache, DynamicCache, DynamicLayer
except ImportError:  # transformers is optional for the kernel-level API
    Cache = DynamicCache = DynamicLayer = None

if DynamicLayer is not None:
    class _StreamingLayer(DynamicLayer):
        window = 1
        sinks = 0

        def __init__(self):
            super().__init__()
            self.cumulative_length = 0

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            self.cumulative_length += key_states.shape[-2]
            full_k = torch.cat([self.keys, key_states], dim=-2)
            full_v = torch.cat([self.values, value_states], dim=-2)
            keep_tail = self.window - 1
            if full_k.shape[-2] > self.sinks + keep_tail:
                self.keys = torch.cat([full_k[:, :, :self.sinks], full_k[:, :, full_k.shape[-2] - keep_tail:]], -2)
                self.values = torch.cat([full_v[:, :, :self.sinks], full_v[:, :, full_v.shape[-2] - keep_tail:]], -2)
            else:
                self.keys, self.values = full_k, full_v
            # The attention call refuses a padding mask with these keys: after eviction
            # the mask's last columns are no longer the cache's.
            full_k._sparsecore_streaming = True
            return full_k, full_v

        def get_seq_length(self) -> int:
            return self.cumulative_length

        def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
            stored = self.keys.shape[-2] if self.is_initialized else 0
            return stored + query_length, 0


class StreamingCache(DynamicCache if DynamicCache is not None else object):
    """A ``transformers`` cache that keeps only the ``sinks`` first and ``window - 1`` last tokens.

    Use it with :class:`StaticAttentionConfig` of the same window and sinks (e.g.
    ``model.generate(..., past_key_values=config.make_cache())``); batches must not be
    padded (a padding mask cannot follow the eviction).
    """

    def __init__(self, window: int, sinks: int = 4):
        if DynamicCache is None:
            raise ImportError("StreamingCache needs transformers")
        if not isinstance(window, int) or window < 1 or not isinstance(sinks, int) or sinks < 0:
            raise ValueError(f"window must be an int >= 1 and sinks an int >= 0, got {window!r} and {sinks!r}")
        layer = type("StreamingLayer", (_StreamingLayer,), {"window": window, "sinks": sinks})
        Cache.__init__(self, layer_class_to_replicate=layer)
        self.window, self.sinks = window, sinks

"""Sparse flash attention on the CPU: block-sparse, sliding window + sinks, dynamic
top-k / vertical-slash block selection, BLASST skipping and Quest sparse decode, plus
their HF ``transformers`` integration.

The kernel call is :func:`flash_attention`; :class:`BlockMask` says which KV blocks each
q block computes; the configs are recipes for whole models, applied with
:func:`sparsify_attention_`.
"""

from .calibrate import calibrate_blasst
from .configs import (BLASSTConfig, QuestConfig, StaticAttentionConfig, TopKAttentionConfig, config_from_dict,
                      config_to_dict)
from .functional import AttentionStats, flash_attention
from .hf import apply_recipe, sparsify_attention_
from .kv_cache import GrowingCache
from .mask import BlockMask
from .quest import PageBounds, QuestCache, page_scores, quest_block_mask
from .select import topk_blocks, vertical_slash_blocks
from .streaming import StreamingCache

__all__ = [
    "GrowingCache",
    "flash_attention",
    "AttentionStats",
    "BlockMask",
    "topk_blocks",
    "vertical_slash_blocks",
    "PageBounds",
    "QuestCache",
    "StreamingCache",
    "page_scores",
    "quest_block_mask",
    "StaticAttentionConfig",
    "TopKAttentionConfig",
    "BLASSTConfig",
    "calibrate_blasst",
    "QuestConfig",
    "sparsify_attention_",
    "apply_recipe",
    "config_to_dict",
    "config_from_dict",
]

"""Pruning: masks from scores (magnitude, top-k, N:M, block) and calibrated Wanda, layer by layer."""

from .calibration import InputStats, capture_block_inputs, prune_blockwise
from .masks import block_mask, magnitude_mask, nm_mask, sparsity_of, topk_mask, unstructured_mask
from .wanda import wanda_mask, wanda_prune_, wanda_scores

__all__ = [
    "unstructured_mask",
    "magnitude_mask",
    "topk_mask",
    "nm_mask",
    "block_mask",
    "sparsity_of",
    "InputStats",
    "capture_block_inputs",
    "prune_blockwise",
    "wanda_scores",
    "wanda_mask",
    "wanda_prune_",
]

"""Pruning: masks from scores (magnitude, top-k, N:M, block), calibrated Wanda and SparseGPT
layer by layer, and OWL's non-uniform per-layer sparsity."""

from .calibration import InputStats, capture_block_inputs, prune_blockwise, walk_blocks
from .masks import block_mask, magnitude_mask, nm_mask, sparsity_of, topk_mask, unstructured_mask
from .owl import outlier_ratio, owl_allocation, owl_sparsities
from .pattern import Pattern
from .prune import ALLOCATIONS, METHODS, prune_model_, sparsity_report
from .sparsegpt import HessianStats, sparsegpt_prune_weight
from .wanda import sparsegpt_prune_, wanda_mask, wanda_prune_, wanda_scores

__all__ = [
    "unstructured_mask", "magnitude_mask", "topk_mask", "nm_mask", "block_mask", "sparsity_of",
    "Pattern", "METHODS", "ALLOCATIONS",
    "InputStats", "HessianStats", "capture_block_inputs", "walk_blocks", "prune_blockwise",
    "prune_model_", "sparsity_report",
    "wanda_scores", "wanda_mask", "wanda_prune_",
    "sparsegpt_prune_weight", "sparsegpt_prune_",
    "outlier_ratio", "owl_sparsities", "owl_allocation",
]

"""Pruning: masks from scores (magnitude, top-k, N:M, block). Wanda and SparseGPT build on these."""

from .masks import block_mask, magnitude_mask, nm_mask, sparsity_of, topk_mask, unstructured_mask

__all__ = ["unstructured_mask", "magnitude_mask", "topk_mask", "nm_mask", "block_mask", "sparsity_of"]

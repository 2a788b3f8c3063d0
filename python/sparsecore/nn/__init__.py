"""Modules built on the sparsecore kernels."""

from .sparse_linear import SparseLinear, load_sparse_state_dict

__all__ = ["SparseLinear", "load_sparse_state_dict"]

"""Modules built on the sparsecore kernels."""

from .sparse_linear import SparseLinear

__all__ = ["SparseLinear"]

"""Modules built on the sparsecore kernels."""

from .fused_projection import ProjectionGroup, ProjectionSlice
from .sparse_linear import SparseLinear, load_sparse_state_dict

__all__ = ["ProjectionGroup", "ProjectionSlice", "SparseLinear", "load_sparse_state_dict"]

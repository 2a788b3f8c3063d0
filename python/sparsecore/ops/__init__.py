"""sparsecore ops registered with torch.library (namespace ``sparsecore``)."""

from .spmm import sparse_linear, spmm

__all__ = ["spmm", "sparse_linear"]

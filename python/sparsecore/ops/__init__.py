"""sparsecore ops registered with torch.library (namespace ``sparsecore``), one module per
op family: :mod:`.spmm` (CSR, BSR), :mod:`.nm` (N:M), :mod:`.act` (activation-sparse
linear); :mod:`.linear` holds the user-facing :func:`spmm` / :func:`sparse_linear`."""

from . import act, attention, nm, spmm as _spmm_ops  # noqa: F401  (registers the ops)
from .linear import sparse_linear, spmm

__all__ = ["spmm", "sparse_linear"]

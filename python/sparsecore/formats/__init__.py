"""Sparse matrix formats: CSR and BSR."""

from .bsr import BSR
from .csr import CSR

__all__ = ["CSR", "BSR"]

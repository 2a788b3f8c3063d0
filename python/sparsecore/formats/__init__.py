"""Sparse matrix formats: CSR, BSR and N:M."""

from .bsr import BSR
from .csr import CSR
from .nm import NM

__all__ = ["CSR", "BSR", "NM"]

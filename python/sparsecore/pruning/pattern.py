"""What shape of sparsity a pruning method produces: unstructured, N:M or whole blocks.

One small value object shared by magnitude, Wanda and SparseGPT so that every method
accepts the same patterns and checks them the same way, before any weight changes.

Examples
--------
>>> from sparsecore.pruning import Pattern
>>> Pattern.parse("2:4")
Pattern(sparsity=0.5, nm=(2, 4), block=None)
>>> Pattern.parse("50%").describe()
'50% unstructured'
>>> Pattern.parse("block16x16", sparsity=0.75).describe()
'75% in 16x16 blocks'
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import torch

from .masks import block_mask, nm_mask, unstructured_mask


@dataclass(frozen=True)
class Pattern:
    """``sparsity`` of unstructured pruning (per output row), or ``nm=(n, m)`` (keep n of every m
    consecutive inputs; ``sparsity`` is then 1 - n/m), or ``block=(rows, cols)`` tiles pruned to
    ``sparsity``."""

    sparsity: float = 0.5
    nm: tuple[int, int] | None = None
    block: tuple[int, int] | None = None

    def __post_init__(self):
        s = float(self.sparsity)
        if math.isnan(s) or not 0.0 <= s < 1.0:
            raise ValueError(f"sparsity must be in [0, 1) (1 would remove every weight), got {self.sparsity!r}")
        if self.nm is not None and self.block is not None:
            raise ValueError("a pattern is N:M or block, not both")
        if self.nm is not None:
            n, m = (int(v) for v in self.nm)
            if not 0 < n <= m:
                raise ValueError(f"N:M needs 0 < N <= M, got {n}:{m}")
            object.__setattr__(self, "nm", (n, m))
            object.__setattr__(self, "sparsity", 1.0 - n / m)
        if self.block is not None:
            bh, bw = (int(v) for v in self.block)
            if bh < 1 or bw < 1:
                raise ValueError(f"block sides must be >= 1, got {bh}x{bw}")
            object.__setattr__(self, "block", (bh, bw))

    @classmethod
    def parse(cls, text: str, sparsity: float | None = None) -> "Pattern":
        """``"2:4"``, ``"4:8"``, ``"50%"``/``"0.5"``/``"unstructured"`` or ``"block16x16"``
        (``sparsity`` gives the fraction for unstructured and block patterns)."""
        t = str(text).strip().lower()
        if m := re.fullmatch(r"(\d+):(\d+)", t):
            return cls(nm=(int(m[1]), int(m[2])))
        if m := re.fullmatch(r"block(\d+)(?:x(\d+))?", t):
            side = int(m[1])
            return cls(sparsity=0.5 if sparsity is None else sparsity, block=(side, int(m[2] or side)))
        if t == "unstructured":
            return cls(sparsity=0.5 if sparsity is None else sparsity)
        if m := re.fullmatch(r"(\d+(?:\.\d+)?)%", t):
            return cls(sparsity=float(m[1]) / 100)
        try:
            return cls(sparsity=float(t))
        except ValueError:
            raise ValueError(f"unknown sparsity pattern {text!r}: use e.g. '50%', '2:4', '4:8' or 'block16x16'") from None

    def with_sparsity(self, sparsity: float) -> "Pattern":
        """The same pattern at another sparsity (per-layer allocation); N:M patterns are fixed."""
        return self if self.nm is not None else replace(self, sparsity=sparsity)

    def describe(self) -> str:
        if self.nm is not None:
            return f"{self.nm[0]}:{self.nm[1]}"
        if self.block is not None:
            return f"{self.sparsity:.0%} in {self.block[0]}x{self.block[1]} blocks"
        return f"{self.sparsity:.0%} unstructured"

    def check(self, name: str, shape: tuple[int, int]) -> None:
        """Raise if a ``shape`` (out, in) weight cannot take this pattern."""
        rows, cols = shape
        if self.nm is not None and cols % self.nm[1]:
            raise ValueError(f"N:M with M = {self.nm[1]} needs {name}'s input dimension ({cols}) "
                             f"to be a multiple of {self.nm[1]}")
        if self.block is not None and (rows % self.block[0] or cols % self.block[1]):
            raise ValueError(f"{name} {tuple(shape)} is not a multiple of the {self.block[0]}x{self.block[1]} block")

    def mask(self, scores: torch.Tensor) -> torch.Tensor:
        """Keep-mask from importance scores (higher = keep)."""
        if self.nm is not None:
            return nm_mask(scores, *self.nm)
        if self.block is not None:
            return block_mask(scores, self.block, self.sparsity)
        return unstructured_mask(scores, self.sparsity)

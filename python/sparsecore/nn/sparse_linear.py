"""``SparseLinear``: an ``nn.Linear`` whose weight is a sparsecore CSR, BSR or N:M matrix."""

from __future__ import annotations

import torch
from torch import nn

from ..formats import BSR, CSR, NM
from ..ops import sparse_linear


class SparseLinear(nn.Module):
    """``y = x @ W.T + b`` with a sparse ``W`` (CSR, BSR or N:M), for any batch shape and dtype.

    ``module.to(device)`` / ``module.to(dtype)`` move and convert the sparse weight like a
    dense one (indices keep their integer type; the plan is rebuilt).

    Examples
    --------
    >>> import torch, sparsecore
    >>> lin = torch.nn.Linear(8, 4)
    >>> mask = torch.rand(4, 8) > 0.5
    >>> sl = sparsecore.nn.SparseLinear.from_linear(lin, mask)
    >>> sl(torch.randn(2, 8)).shape
    torch.Size([2, 4])
    """

    def __init__(self, weight: CSR | BSR | NM, bias: torch.Tensor | None = None):
        super().__init__()
        if not isinstance(weight, (CSR, BSR, NM)):
            raise TypeError(f"weight must be a sparsecore.CSR, BSR or NM, got {type(weight).__name__}")
        self.out_features, self.in_features = weight.shape
        self.weight = weight
        if bias is not None:
            if bias.shape != (self.out_features,):
                raise ValueError(f"bias must have shape ({self.out_features},), got {tuple(bias.shape)}")
            bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.bias = bias

    @classmethod
    def from_linear(cls, linear: nn.Linear, mask: torch.Tensor | None = None, *, format: str = "csr",
                    blocksize: tuple[int, int] = (16, 16), nm: tuple[int, int] = (2, 4),
                    dtype: torch.dtype | None = None) -> "SparseLinear":
        """Keep ``linear.weight`` where ``mask`` is true (default: its nonzeros) in CSR, BSR or N:M form.

        For BSR, ``mask`` is an element mask that must be constant on every ``blocksize`` tile;
        for ``format="nm"`` it must keep at most ``nm[0]`` of every ``nm[1]`` input columns.
        """
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"expected an nn.Linear, got {type(linear).__name__}")
        w = linear.weight.detach()
        if mask is not None and tuple(mask.shape) != tuple(w.shape):
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match the weight {tuple(w.shape)}")
        if format == "csr":
            weight = CSR.from_dense(w, mask=mask, dtype=dtype)
        elif format == "bsr":
            bh, bw = blocksize
            block_mask = None
            if mask is not None:
                rows, cols = w.shape
                if rows % bh or cols % bw:
                    raise ValueError(f"weight shape {tuple(w.shape)} is not a multiple of the block {bh}x{bw}")
                tiles = mask.reshape(rows // bh, bh, cols // bw, bw)
                block_mask = tiles.any(dim=3).any(dim=1)
                if not torch.equal(tiles.all(dim=3).all(dim=1), block_mask):
                    raise ValueError(f"mask is not constant on {bh}x{bw} blocks")
            weight = BSR.from_dense(w, (bh, bw), block_mask=block_mask, dtype=dtype)
        elif format == "nm":
            weight = NM.from_dense(w, *nm, mask=mask, dtype=dtype)
        else:
            raise ValueError(f"format must be 'csr', 'bsr' or 'nm', got {format!r}")
        bias = linear.bias.detach() if linear.bias is not None else None
        return cls(weight, bias if bias is None or dtype is None else bias.to(dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias
        if bias is not None and bias.dtype != x.dtype:
            bias = bias.to(x.dtype)
        return sparse_linear(x, self.weight, bias)

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        w = self.weight
        # fn is what Module.to / .cuda / .half apply to every tensor: it moves
        # integer tensors and converts only floating ones, which is what the
        # index and value arrays need. The plan is rebuilt for the new device.
        if isinstance(w, NM):
            self.weight = NM(fn(w.values), fn(w.bitmap), w.shape, w.n, w.m, check=False)
        else:
            self.weight = type(w)(fn(w.row_ptr), fn(w.col_idx), fn(w.values), w.shape, check=False)
        return self

    @property
    def density(self) -> float:
        return self.weight.density

    def extra_repr(self) -> str:
        fmt = type(self.weight).__name__
        block = f", block={self.weight.blocksize}" if isinstance(self.weight, BSR) else ""
        if isinstance(self.weight, NM):
            block = f", pattern={self.weight.n}:{self.weight.m}"
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"format={fmt}{block}, density={self.density:.3f}, dtype={self.weight.dtype}")

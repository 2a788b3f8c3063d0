"""What CSR and BSR share: sizes, byte accounting and the guard against in-place edits."""

from __future__ import annotations

import torch


class SparseMatrix:
    """Base of the formats. Subclasses set shape, row_ptr, col_idx, values (and _versions)."""

    shape: tuple[int, int]
    row_ptr: torch.Tensor
    col_idx: torch.Tensor
    values: torch.Tensor

    def _adopt(self, row_ptr, col_idx, values, shape, device) -> torch.Tensor:
        """Keep contiguous copies of the checked arrays; returns row_ptr on the CPU (for the plan)."""
        self.shape = shape
        self.row_ptr = row_ptr.contiguous()
        self.col_idx = col_idx.contiguous()
        self.values = values.contiguous()
        self.device = device
        return self.row_ptr.cpu()

    def _cpu_parts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """col_idx and values on the CPU, for the structural validation."""
        return self.col_idx.cpu(), self.values.cpu()

    @property
    def nnz(self) -> int:
        """Stored elements (for BSR: blocks x block area, explicit zeros in blocks included)."""
        return self.values.numel()

    @property
    def dtype(self) -> torch.dtype:
        return self.values.dtype

    @property
    def density(self) -> float:
        rows, cols = self.shape
        return self.nnz / max(1, rows * cols)

    @property
    def nbytes(self) -> int:
        """Bytes of the format's arrays (row_ptr, col_idx, values)."""
        return sum(t.numel() * t.element_size() for t in (self.row_ptr, self.col_idx, self.values))

    @property
    def bytes_per_nonzero(self) -> float:
        return self.nbytes / max(1, self.nnz)

    def _current_versions(self) -> tuple[int, int, int]:
        return (self.row_ptr._version, self.col_idx._version, self.values._version)

    def _check_unmodified(self) -> None:
        # The structure was validated and planned at construction; an in-place
        # edit since then could point the kernels outside their arrays.
        if self._current_versions() != self._versions:
            raise ValueError(f"the {type(self).__name__}'s row_ptr, col_idx or values were modified in place "
                             f"after validation (the plan depends on them); build a new {type(self).__name__}")

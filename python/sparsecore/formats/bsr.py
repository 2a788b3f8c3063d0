"""Block sparse row matrices for the sparsecore kernels."""

from __future__ import annotations

import torch

from .._dtypes import compact_index_dtype, dtype_code, index_code, indices_to_int64
from .._native import _C
from ._base import SparseMatrix
from ._checks import (
    check_compressed_parts,
    compact_indices,
    check_finite,
    check_index_space,
    check_shape,
    check_tensor,
    check_values_dtype,
    plan_chunks,
)

SUPPORTED_BLOCK_SIDES = range(1, 257)


class BSR(SparseMatrix):
    """A sparse matrix of dense ``block_h x block_w`` blocks, validated and planned once.

    Parts: ``row_ptr`` (int64, block rows + 1), ``col_idx`` (block column per stored block,
    int16 read as uint16 or int32, sorted and unique within a block row), ``values``
    (``nnzb x block_h x block_w``, float32 / bfloat16 / float16). Any block side from 1 to
    256 works: 1x4, 4x4, 8x8, 16x16, 32x32, 64x64 and rectangular blocks such as 1x16.

    On a CUDA device the ops run an equivalent CSR on the CUDA CSR kernel (tensor-core
    BSR kernels are a later addition); it is built once, from the blocks directly (no
    dense intermediate), the first time it is needed.

    Examples
    --------
    >>> import torch, sparsecore
    >>> w = torch.zeros(8, 8); w[:4, 4:] = 1.0
    >>> b = sparsecore.BSR.from_dense(w, blocksize=(4, 4))
    >>> b.nnzb, b.blocksize
    (1, (4, 4))
    """

    def __init__(self, row_ptr, col_idx, values, shape, *, check: bool = True):
        rows, cols = check_shape(shape)
        check_tensor(values, "values", 3)
        bh, bw = int(values.shape[1]), int(values.shape[2])
        if bw > 0 and cols % bw == 0:
            col_idx = compact_indices(col_idx, cols // bw, "block column")
        device = check_compressed_parts(row_ptr, col_idx, values, 3)
        if bh not in SUPPORTED_BLOCK_SIDES or bw not in SUPPORTED_BLOCK_SIDES:
            raise ValueError(f"block shape {bh}x{bw} is not supported (each side must be 1..256)")
        if rows % bh or cols % bw:
            raise ValueError(f"shape {(rows, cols)} is not a multiple of the block shape {bh}x{bw}")
        block_rows, block_cols = rows // bh, cols // bw
        check_index_space(col_idx, block_cols, "block columns")
        if row_ptr.numel() != block_rows + 1:
            raise ValueError(f"row_ptr must have block_rows + 1 = {block_rows + 1} entries, got {row_ptr.numel()}")
        if col_idx.numel() != values.shape[0]:
            raise ValueError(f"col_idx has {col_idx.numel()} entries but values holds {values.shape[0]} blocks")
        self.blocksize = (bh, bw)
        row_ptr_cpu = self._adopt(row_ptr, col_idx, values, (rows, cols), device)
        if check:
            cols_cpu, vals_cpu = self._cpu_parts()
            _C.bsr_validate(block_rows, block_cols, bh, bw, vals_cpu.shape[0], row_ptr_cpu.data_ptr(),
                            cols_cpu.data_ptr(), index_code(cols_cpu), vals_cpu.data_ptr(),
                            dtype_code(vals_cpu.dtype, "values"))
        # Work per block row is blocks * block area; the row cost covers its stores.
        self.row_chunks = plan_chunks(row_ptr_cpu, block_rows, 2)
        self._versions = self._current_versions()
        self._csr_for_cuda = None

    def __reduce__(self):
        # Pickling and copy.deepcopy rebuild through the validating constructor.
        return (BSR, (self.row_ptr, self.col_idx, self.values, self.shape))

    def csr_for_cuda(self):
        """The same matrix as a CSR (explicit zeros of the blocks kept), built once from the
        blocks: each block row's blocks laid side by side, row by row."""
        if self._csr_for_cuda is None:
            from .csr import CSR

            rows, cols = self.shape
            bh, bw = self.blocksize
            counts = self.row_ptr.diff()                      # blocks per block row
            brow, bcol = self._block_coords()
            # Element (r, c) of block p sits in CSR row brow*bh + r; within that row the
            # blocks keep their (sorted) order, bw entries each.
            order_in_row = torch.arange(self.nnzb, device=self.device) - self.row_ptr[:-1].repeat_interleave(counts)
            row_len = (counts * bw).repeat_interleave(bh)      # entries per element row
            row_ptr = torch.zeros(rows + 1, dtype=torch.int64, device=self.device)
            torch.cumsum(row_len, 0, out=row_ptr[1:])
            c = torch.arange(bw, device=self.device)
            dest = None
            if self.nnzb:
                starts = row_ptr[:-1].view(-1, bh)[brow]          # (nnzb, bh): where each block's rows start
                dest = starts.unsqueeze(-1) + (order_in_row * bw).view(-1, 1, 1) + c.view(1, 1, -1)
            values = torch.empty(int(row_ptr[-1]), dtype=self.values.dtype, device=self.device)
            col_idx = torch.empty(int(row_ptr[-1]), dtype=torch.int64, device=self.device)
            if self.nnzb:
                values[dest.reshape(-1)] = self.values.reshape(-1)
                col_idx[dest.reshape(-1)] = (bcol.view(-1, 1, 1) * bw + c.view(1, 1, -1)).expand(
                    self.nnzb, bh, bw).reshape(-1)
            self._csr_for_cuda = CSR(row_ptr, col_idx, values, (rows, cols), check=False)
        return self._csr_for_cuda

    # ------------------------------------------------------------ constructors
    @classmethod
    def from_dense(cls, dense: torch.Tensor, blocksize: tuple[int, int], *, block_mask: torch.Tensor | None = None,
                   threshold: float | None = None, dtype: torch.dtype | None = None,
                   index_dtype: torch.dtype | None = None) -> "BSR":
        """Keep the blocks where ``block_mask`` is true, or whose largest ``|value|`` exceeds ``threshold``,
        or that hold any nonzero."""
        check_tensor(dense, "dense", 2)
        check_values_dtype(dense.dtype, "dense")
        bh, bw = (int(b) for b in blocksize)
        rows, cols = dense.shape
        if bh < 1 or bw < 1:
            raise ValueError(f"blocksize must be positive, got {blocksize}")
        if rows % bh or cols % bw:
            raise ValueError(f"shape {(rows, cols)} is not a multiple of the block shape {bh}x{bw}")
        if block_mask is not None and threshold is not None:
            raise ValueError("give either block_mask or threshold, not both")
        blocks = dense.reshape(rows // bh, bh, cols // bw, bw).transpose(1, 2)  # (BR, BC, bh, bw)
        if block_mask is not None:
            check_tensor(block_mask, "block_mask", 2)
            if tuple(block_mask.shape) != (rows // bh, cols // bw):
                raise ValueError(f"block_mask must have shape {(rows // bh, cols // bw)}, got {tuple(block_mask.shape)}")
            keep = block_mask.to(device=dense.device, dtype=torch.bool)
        else:
            amax = blocks.abs().amax(dim=(2, 3)) if blocks.numel() else torch.zeros(blocks.shape[:2], device=dense.device)
            if threshold is not None and not (float(threshold) >= 0.0):
                raise ValueError(f"threshold must be a non-negative number, got {threshold}")
            keep = amax > (threshold if threshold is not None else 0.0)
        nz = keep.nonzero(as_tuple=True)
        values = blocks[nz].to(dtype or dense.dtype).contiguous()
        check_finite(values, "dense")
        row_ptr = torch.zeros(rows // bh + 1, dtype=torch.int64, device=dense.device)
        torch.cumsum(keep.sum(dim=1), 0, out=row_ptr[1:])
        idx_dtype = index_dtype or compact_index_dtype(cols // bw)
        col_idx = nz[1].to(torch.int32).to(idx_dtype)
        return cls(row_ptr, col_idx, values, (rows, cols), check=False)

    @classmethod
    def from_torch(cls, t: torch.Tensor, *, index_dtype: torch.dtype | None = None) -> "BSR":
        """From a ``torch.sparse_bsr`` tensor; indices are validated."""
        check_tensor(t, "tensor", 2)
        if t.layout != torch.sparse_bsr:
            raise TypeError(f"expected a sparse BSR tensor, got layout {t.layout}")
        values = t.values()
        bw = values.shape[2]
        col = compact_indices(t.col_indices(), t.shape[1] // bw, "block column", index_dtype)
        return cls(t.crow_indices().to(torch.int64), col, values, tuple(t.shape))

    # ------------------------------------------------------------ conversions
    def to_torch(self) -> torch.Tensor:
        return torch.sparse_bsr_tensor(self.row_ptr, indices_to_int64(self.col_idx), self.values, self.shape,
                                       check_invariants=False)

    def _block_coords(self) -> tuple[torch.Tensor, torch.Tensor]:
        block_rows = self.shape[0] // self.blocksize[0]
        brow = torch.repeat_interleave(torch.arange(block_rows, device=self.device), self.row_ptr.diff())
        return brow, indices_to_int64(self.col_idx)

    def to_dense(self) -> torch.Tensor:
        rows, cols = self.shape
        bh, bw = self.blocksize
        blocks = torch.zeros(rows // bh, cols // bw, bh, bw, dtype=self.values.dtype, device=self.device)
        brow, bcol = self._block_coords()
        blocks[brow, bcol] = self.values
        return blocks.transpose(1, 2).reshape(rows, cols)

    def stored_mask(self) -> torch.Tensor:
        """The (rows, cols) bool mask of stored positions (every element of a stored block)."""
        rows, cols = self.shape
        bh, bw = self.blocksize
        keep = torch.zeros(rows // bh, cols // bw, dtype=torch.bool, device=self.device)
        brow, bcol = self._block_coords()
        keep[brow, bcol] = True
        return keep.repeat_interleave(bh, 0).repeat_interleave(bw, 1)

    def to(self, device=None, dtype: torch.dtype | None = None) -> "BSR":
        device = torch.device(device) if device is not None else self.device
        values = self.values.to(device=device, dtype=dtype or self.values.dtype)
        return BSR(self.row_ptr.to(device), self.col_idx.to(device), values, self.shape, check=False)

    # ------------------------------------------------------------ properties
    @property
    def nnzb(self) -> int:
        return self.values.shape[0]

    def __repr__(self) -> str:
        return (f"BSR(shape={self.shape}, blocksize={self.blocksize}, nnzb={self.nnzb}, "
                f"density={self.density:.3f}, dtype={self.dtype}, device={self.device})")

"""Compressed sparse row matrices for the sparsecore kernels."""

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

# Per-row cost (in nonzeros) used to balance rows of very different lengths:
# each row pays for its output store and reduction.
_ROW_COST = 8
# Density from which the GEMV reads values + a bitmap instead of values +
# uint16 indices. Bytes alone favour the bitmap above 1/16, but its fixed cost
# per 8 columns makes it compute-bound; measured here (bf16, 4096x4096) the two
# tie at 30% density and the bitmap wins above.
BITMAP_MIN_DENSITY = 0.3


class CSR(SparseMatrix):
    """A sparse matrix in compressed sparse row form, validated and planned once.

    Parts: ``row_ptr`` (int64, rows + 1), ``col_idx`` (int16 read as uint16 when the
    matrix has at most 65536 columns, else int32; sorted and unique within each row;
    int64 indices, as ``torch.sparse_csr`` tensors carry them, are range-checked and
    compacted), ``values`` (float32, bfloat16 or float16). The plan (an nnz-balanced row partition
    for the CPU threads) is computed at construction; the ops only consume it.

    Examples
    --------
    >>> import torch, sparsecore
    >>> w = torch.tensor([[0.0, 2.0, 0.0], [1.0, 0.0, 3.0]])
    >>> a = sparsecore.CSR.from_dense(w)
    >>> a.nnz, a.shape
    (3, (2, 3))
    >>> torch.equal(a.to_dense(), w)
    True
    """

    def __init__(self, row_ptr, col_idx, values, shape, *, check: bool = True, bitmap: bool | None = None):
        rows, cols = check_shape(shape)
        col_idx = compact_indices(col_idx, cols, "column")
        device = check_compressed_parts(row_ptr, col_idx, values, 1)
        check_index_space(col_idx, cols, "columns")
        if row_ptr.numel() != rows + 1:
            raise ValueError(f"row_ptr must have rows + 1 = {rows + 1} entries, got {row_ptr.numel()}")
        if col_idx.numel() != values.numel():
            raise ValueError(f"col_idx and values must have the same length, got {col_idx.numel()} and {values.numel()}")
        row_ptr_cpu = self._adopt(row_ptr, col_idx, values, (rows, cols), device)
        if check:
            cols_cpu, vals_cpu = self._cpu_parts()
            _C.csr_validate(rows, cols, vals_cpu.numel(), row_ptr_cpu.data_ptr(), cols_cpu.data_ptr(),
                            index_code(cols_cpu), vals_cpu.data_ptr(), dtype_code(vals_cpu.dtype, "values"))
        self.row_chunks = plan_chunks(row_ptr_cpu, rows, _ROW_COST)
        use_bitmap = self.density >= BITMAP_MIN_DENSITY if bitmap is None else bool(bitmap)
        self.bitmap = self._plan_bitmap(row_ptr_cpu) if use_bitmap and device.type == "cpu" else torch.empty(0, dtype=torch.uint8)
        self._versions = self._current_versions()

    def _plan_bitmap(self, row_ptr_cpu: torch.Tensor) -> torch.Tensor:
        rows, cols = self.shape
        bitmap = torch.empty(rows * _C.bitmap_row_bytes(cols), dtype=torch.uint8)
        _C.plan_csr_bitmap(rows, cols, self.nnz, row_ptr_cpu.data_ptr(), self.col_idx.data_ptr(),
                           index_code(self.col_idx), bitmap.data_ptr())
        return bitmap

    def __reduce__(self):
        # Pickling (DataLoader workers, torch.save) and copy.deepcopy rebuild through the
        # validating constructor, so the copy gets its own plan and version guard.
        return (CSR, (self.row_ptr, self.col_idx, self.values, self.shape), {"_bitmap": bool(self.bitmap.numel())})

    def __setstate__(self, state):
        if state.get("_bitmap") and not self.bitmap.numel() and self.device.type == "cpu":
            self.bitmap = self._plan_bitmap(self.row_ptr.cpu())
            self._versions = self._current_versions()

    # ------------------------------------------------------------ constructors
    @classmethod
    def from_dense(cls, dense: torch.Tensor, *, mask: torch.Tensor | None = None, threshold: float | None = None,
                   dtype: torch.dtype | None = None, index_dtype: torch.dtype | None = None,
                   bitmap: bool | None = None) -> "CSR":
        """Keep the entries where ``mask`` is true, or where ``|dense| > threshold``, or the nonzeros.

        ``dtype`` converts the stored values (default: the dense dtype); ``index_dtype`` forces int32
        indices (default: the compact uint16 form whenever the column count allows it); ``bitmap``
        forces the bitmap GEMV plan on or off (default: on from ``BITMAP_MIN_DENSITY``).
        """
        check_tensor(dense, "dense", 2)
        check_values_dtype(dense.dtype, "dense")
        if mask is not None and threshold is not None:
            raise ValueError("give either mask or threshold, not both")
        if mask is not None:
            check_tensor(mask, "mask", 2)
            if mask.shape != dense.shape:
                raise ValueError(f"mask shape {tuple(mask.shape)} does not match dense shape {tuple(dense.shape)}")
            keep = mask.to(device=dense.device, dtype=torch.bool)
        elif threshold is not None:
            if not (float(threshold) >= 0.0):
                raise ValueError(f"threshold must be a non-negative number, got {threshold}")
            keep = dense.abs() > threshold
        else:
            keep = dense != 0
        check_finite(dense[keep], "dense")
        rows, cols = dense.shape
        counts = keep.sum(dim=1)
        row_ptr = torch.zeros(rows + 1, dtype=torch.int64, device=dense.device)
        torch.cumsum(counts, 0, out=row_ptr[1:])
        nz = keep.nonzero(as_tuple=True)  # row-major order: sorted columns within each row
        idx_dtype = index_dtype or compact_index_dtype(cols)
        col_idx = nz[1].to(torch.int32).to(idx_dtype) if idx_dtype == torch.int16 else nz[1].to(idx_dtype)
        values = dense[nz].to(dtype or dense.dtype)
        return cls(row_ptr, col_idx, values, (rows, cols), check=False, bitmap=bitmap)

    @classmethod
    def from_torch(cls, t: torch.Tensor, *, index_dtype: torch.dtype | None = None) -> "CSR":
        """From a ``torch.sparse_csr`` (or COO / dense) tensor; indices are validated."""
        check_tensor(t, "tensor", 2)
        if t.layout == torch.sparse_coo:
            t = t.coalesce().to_sparse_csr()
        elif t.layout == torch.strided:
            return cls.from_dense(t, index_dtype=index_dtype)
        elif t.layout != torch.sparse_csr:
            raise TypeError(f"expected a sparse CSR, COO or dense tensor, got layout {t.layout}")
        rows, cols = t.shape
        col_idx = compact_indices(t.col_indices(), cols, "column", index_dtype)
        return cls(t.crow_indices().to(torch.int64), col_idx, t.values(), (rows, cols))

    # ------------------------------------------------------------ conversions
    def to_torch(self) -> torch.Tensor:
        """As a ``torch.sparse_csr`` tensor (int64 indices)."""
        # Already validated at construction, so torch need not re-check.
        return torch.sparse_csr_tensor(self.row_ptr, indices_to_int64(self.col_idx), self.values, self.shape,
                                       check_invariants=False)

    def to_dense(self) -> torch.Tensor:
        rows, cols = self.shape
        if self.device.type == "cpu":  # the native scatter: ~10x torch's index_put here
            return torch.ops.sparsecore.csr_to_dense(self.row_ptr, self.col_idx, self.values, cols)
        out = torch.zeros(rows, cols, dtype=self.values.dtype, device=self.device)
        row_of = torch.repeat_interleave(torch.arange(rows, device=self.device), self.row_ptr.diff())
        out[row_of, indices_to_int64(self.col_idx)] = self.values
        return out

    def to(self, device=None, dtype: torch.dtype | None = None) -> "CSR":
        """A copy on another device and/or with another value dtype (already validated: no re-check)."""
        device = torch.device(device) if device is not None else self.device
        values = self.values.to(device=device, dtype=dtype or self.values.dtype)
        return CSR(self.row_ptr.to(device), self.col_idx.to(device), values, self.shape, check=False,
                   bitmap=bool(self.bitmap.numel()) if device.type == "cpu" else False)

    # ------------------------------------------------------------ properties
    @property
    def gemv_bytes(self) -> int:
        """Bytes one GEMV (N = 1) reads: values + bitmap when the plan has one, else the CSR arrays."""
        if self.bitmap.numel():
            return sum(t.numel() * t.element_size() for t in (self.row_ptr, self.values, self.bitmap))
        return self.nbytes

    def __repr__(self) -> str:
        return (f"CSR(shape={self.shape}, nnz={self.nnz}, density={self.density:.3f}, dtype={self.dtype}, "
                f"index={'uint16' if self.col_idx.dtype == torch.int16 else 'int32'}, device={self.device})")

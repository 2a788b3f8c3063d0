"""N:M semi-structured sparse matrices (2:4 first): compressed values plus a bitmap of the kept columns."""

from __future__ import annotations

import torch

from .._bits import pack_bits, unpack_bits
from .._dtypes import dtype_code
from .._native import _C
from ._checks import check_finite, check_shape, check_tensor, check_values_dtype

SUPPORTED_M = (2, 4, 8)
# Below one thread block of rows (4 warps x 16) the tensor-core kernel cannot fill the GPU
# and sparse cannot win; such weights use the dense fallback.
TENSOR_CORE_MIN_ROWS = 64


def check_pattern(n: int, m: int) -> tuple[int, int]:
    n, m = int(n), int(m)
    if m not in SUPPORTED_M or not 1 <= n < m:
        raise ValueError(f"N:M pattern {n}:{m} is not supported: m must be one of {SUPPORTED_M} and 1 <= n < m")
    return n, m


def _check_columns(cols: int, m: int) -> None:
    if cols % m:
        raise ValueError(f"the reduction dimension (columns, in_features) {cols} is not a multiple of m = {m}; "
                         f"N:M groups run along it, so pad it to {(cols + m - 1) // m * m} or use CSR")


def select_nm_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """The N:M mask keeping the ``n`` highest ``scores`` of every ``m`` consecutive columns.

    Ties go to the lower column index, so the mask is deterministic. ``scores`` may be
    magnitudes, Wanda scores or anything else with one entry per weight.

    Examples
    --------
    >>> import torch
    >>> from sparsecore.formats.nm import select_nm_mask
    >>> select_nm_mask(torch.tensor([[1.0, 3.0, 3.0, 2.0]]), 2, 4).tolist()
    [[False, True, True, False]]
    """
    check_tensor(scores, "scores", 2)
    n, m = check_pattern(n, m)
    rows, cols = scores.shape
    _check_columns(cols, m)
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("scores contain NaN or Inf")
    groups = scores.detach().float().reshape(rows, cols // m, m)
    # A stable descending sort puts the lower index first among equal scores.
    order = torch.sort(groups, dim=-1, descending=True, stable=True).indices[..., :n]
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, order, True)
    return mask.reshape(rows, cols)


def _first_bad_group(keep: torch.Tensor, n: int, m: int) -> str | None:
    rows, cols = keep.shape
    counts = keep.reshape(rows, cols // m, m).sum(-1)
    bad = (counts > n).nonzero()
    if not bad.numel():
        return None
    r, g = (int(v) for v in bad[0])
    return (f"row {r}, columns {g * m}..{g * m + m - 1} keep {int(counts[r, g])} entries, "
            f"more than {n} of {m}")


def nm_to_dense(values: torch.Tensor, bitmap: torch.Tensor, cols: int) -> torch.Tensor:
    """The dense (rows, cols) matrix of N:M parts (values in column order, bitmap of stored columns)."""
    out = torch.zeros(values.shape[0], cols, dtype=values.dtype, device=values.device)
    out[unpack_bits(bitmap, cols)] = values.reshape(-1)
    return out


class NM:
    """An N:M semi-structured sparse matrix (2:4, 4:8, 1:4, 1:2, ...), validated once.

    Every group of ``m`` consecutive columns (the reduction dimension: ``in_features`` of a
    linear weight) stores exactly ``n`` values; a group that keeps fewer nonzeros stores
    explicit zeros. Parts: ``values`` (rows x cols*n/m, float32 / bfloat16 / float16, in
    column order) and ``bitmap`` (rows x ``bitmap_row_bytes(cols)`` uint8, bit l of byte q
    marks column 8q + l). The fixed rate lets the kernels find every group's values
    without counting, which is why 2:4 runs faster than CSR at the same 50%. A 2:4 bf16
    weight costs 1.125 bytes per weight (dense: 2).

    Examples
    --------
    >>> import torch, sparsecore
    >>> w = torch.tensor([[0.0, 2.0, 0.0, 1.0, 5.0, 0.0, 0.0, 4.0]])
    >>> a = sparsecore.NM.from_dense(w)          # the nonzeros already form a 2:4 pattern
    >>> a.values.tolist(), a.bytes_per_weight
    ([[2.0, 1.0, 5.0, 4.0]], 2.25)
    >>> torch.equal(a.to_dense(), w)
    True
    >>> b = sparsecore.NM.from_dense(torch.arange(8.0).reshape(1, 8), scores="magnitude")
    >>> b.to_dense().tolist()
    [[0.0, 0.0, 2.0, 3.0, 0.0, 0.0, 6.0, 7.0]]
    """

    def __init__(self, values: torch.Tensor, bitmap: torch.Tensor, shape, n: int = 2, m: int = 4, *,
                 check: bool = True):
        rows, cols = check_shape(shape)
        self.n, self.m = check_pattern(n, m)
        _check_columns(cols, self.m)
        check_tensor(values, "values", 2)
        check_tensor(bitmap, "bitmap", 2)
        check_values_dtype(values.dtype, "values")
        if bitmap.dtype != torch.uint8:
            raise TypeError(f"bitmap must be uint8, got {bitmap.dtype}")
        if tuple(values.shape) != (rows, cols // self.m * self.n):
            raise ValueError(f"values must have shape {(rows, cols // self.m * self.n)} for a {rows}x{cols} "
                             f"{self.n}:{self.m} matrix, got {tuple(values.shape)}")
        if tuple(bitmap.shape) != (rows, _C.bitmap_row_bytes(cols)):
            raise ValueError(f"bitmap must have shape {(rows, _C.bitmap_row_bytes(cols))}, got {tuple(bitmap.shape)}")
        if values.device != bitmap.device:
            raise ValueError(f"values are on {values.device} but the bitmap on {bitmap.device}")
        self.shape = (rows, cols)
        self.values = values.contiguous()
        self.bitmap = bitmap.contiguous()
        self.device = values.device
        if check:
            v, b = self.values.cpu(), self.bitmap.cpu()
            _C.nm_validate(rows, cols, self.n, self.m, v.data_ptr(), dtype_code(v.dtype, "values"), b.data_ptr())
        self.mma_meta = self._tensor_core_metadata()
        self._dense = {}  # dtype -> the decompressed weight, for the CUDA cuBLAS fallback
        self._versions = self._current_versions()

    def __reduce__(self):
        # Pickling and copy.deepcopy rebuild through the validating constructor.
        return (NM, (self.values, self.bitmap, self.shape, self.n, self.m))

    def runs_on_tensor_cores(self, dtype: torch.dtype) -> bool:
        """Whether an input of ``dtype`` runs on the sparse tensor cores (CUDA only)."""
        return self.tensor_cores and dtype == self.dtype and self.shape[1] > 0

    def dense_for(self, dtype: torch.dtype) -> torch.Tensor:
        """The decompressed weight in ``dtype``, built once and kept: what a CUDA N:M weight
        that cannot use the sparse tensor cores (not 2:4, fp32, small or unaligned, or an
        input of another dtype) runs on cuBLAS with, instead of decompressing every call."""
        if dtype not in self._dense:
            self._dense[dtype] = self.to_dense().to(dtype)
        return self._dense[dtype]

    def _tensor_core_metadata(self) -> torch.Tensor:
        """On CUDA, 2:4 bf16/fp16 weights with rows % 16 == 0 and cols % 32 == 0 get their
        metadata in mma.sp register order (reordered once, here, as CUTLASS does); other
        N:M weights on CUDA run through the dense fallback, and so do tiny weights (fewer
        than TENSOR_CORE_MIN_ROWS rows fill less than one thread block: the launch and the
        decompression-free dense GEMM cost the same or less)."""
        rows, cols = self.shape
        if (self.device.type != "cuda" or (self.n, self.m) != (2, 4) or self.dtype == torch.float32
                or rows % 16 or cols % 32 or rows < TENSOR_CORE_MIN_ROWS or cols == 0):
            return torch.empty(0, dtype=torch.int32, device=self.device)
        bits = self.bitmap.cpu()
        meta = torch.empty(_C.nm24_metadata_words(rows, cols), dtype=torch.int32)
        _C.nm24_pack_metadata(bits.data_ptr(), rows, cols, meta.data_ptr())
        return meta.to(self.device)

    @property
    def tensor_cores(self) -> bool:
        """True when the op runs on sparse tensor cores (mma.sp); false on CPU and for CUDA
        weights that are not 2:4 bf16/fp16 on 16 x 32 tiles (those use the dense fallback)."""
        return self.mma_meta.numel() > 0

    # ------------------------------------------------------------ constructors
    @classmethod
    def from_dense(cls, dense: torch.Tensor, n: int = 2, m: int = 4, *, mask: torch.Tensor | None = None,
                   scores: torch.Tensor | str | None = None, dtype: torch.dtype | None = None) -> "NM":
        """Compress ``dense`` (rows x cols) keeping ``mask``, or the top ``n`` of every ``m`` by ``scores``.

        With neither, the nonzeros of ``dense`` are kept and must already form an N:M pattern.
        ``scores="magnitude"`` selects by ``|dense|``; a tensor (e.g. Wanda's ``|W| * ||X||``)
        selects by its values. A mask with more than ``n`` entries in some group is rejected
        with the first offending group named.
        """
        check_tensor(dense, "dense", 2)
        check_values_dtype(dense.dtype, "dense")
        n, m = check_pattern(n, m)
        rows, cols = dense.shape
        _check_columns(cols, m)
        if mask is not None and scores is not None:
            raise ValueError("give either mask or scores, not both")
        if isinstance(scores, str):
            if scores != "magnitude":
                raise ValueError(f"scores must be a tensor or 'magnitude', got {scores!r}")
            scores = dense.abs()
        if scores is not None:
            check_tensor(scores, "scores", 2)
            if scores.shape != dense.shape:
                raise ValueError(f"scores shape {tuple(scores.shape)} does not match dense shape {tuple(dense.shape)}")
            keep = select_nm_mask(scores.to(dense.device), n, m)
        elif mask is not None:
            check_tensor(mask, "mask", 2)
            if mask.shape != dense.shape:
                raise ValueError(f"mask shape {tuple(mask.shape)} does not match dense shape {tuple(dense.shape)}")
            keep = mask.to(device=dense.device, dtype=torch.bool)
        else:
            keep = dense != 0
        problem = _first_bad_group(keep, n, m)
        if problem is not None:
            raise ValueError(f"not an {n}:{m} pattern: {problem}")
        check_finite(dense[keep], "dense")
        if rows == 0 or cols == 0:  # an empty weight: nothing stored, the product is the bias
            values = torch.empty(rows, cols // m * n, dtype=dtype or dense.dtype, device=dense.device)
            bitmap = torch.zeros(rows, _C.bitmap_row_bytes(cols), dtype=torch.uint8, device=dense.device)
            return cls(values, bitmap, (rows, cols), n, m, check=False)
        # Exactly n slots per group: the kept columns first, then the lowest free ones.
        groups = keep.reshape(rows, cols // m, m)
        lane = torch.arange(m, device=dense.device)
        priority = groups.to(torch.int64) * (2 * m) + (m - lane)
        slots = torch.sort(torch.topk(priority, n, dim=-1).indices, dim=-1).values
        columns = (slots + torch.arange(cols // m, device=dense.device).unsqueeze(-1) * m).reshape(rows, -1)
        kept = torch.where(keep, dense, torch.zeros((), dtype=dense.dtype, device=dense.device))
        values = kept.gather(1, columns).to(dtype or dense.dtype)
        stored = torch.zeros(rows, cols, dtype=torch.bool, device=dense.device).scatter_(1, columns, True)
        return cls(values, pack_bits(stored, _C.bitmap_row_bytes(cols)), (rows, cols), n, m, check=False)

    # ------------------------------------------------------------ conversions
    def stored_mask(self) -> torch.Tensor:
        """The (rows, cols) bool mask of stored positions (exactly n per group)."""
        return unpack_bits(self.bitmap, self.shape[1])

    def to_dense(self) -> torch.Tensor:
        return nm_to_dense(self.values, self.bitmap, self.shape[1])

    def to(self, device=None, dtype: torch.dtype | None = None) -> "NM":
        """A copy on another device and/or with another value dtype (already validated: no re-check)."""
        device = torch.device(device) if device is not None else self.device
        values = self.values.to(device=device, dtype=dtype or self.values.dtype)
        return NM(values, self.bitmap.to(device), self.shape, self.n, self.m, check=False)  # rebuilds mma metadata

    # ------------------------------------------------------------ properties
    @property
    def dtype(self) -> torch.dtype:
        return self.values.dtype

    @property
    def nnz(self) -> int:
        """Stored values (explicit zeros in groups that kept fewer than n included)."""
        return self.values.numel()

    @property
    def density(self) -> float:
        return self.n / self.m

    @property
    def nbytes(self) -> int:
        return (self.values.numel() * self.values.element_size() + self.bitmap.numel()
                + self.mma_meta.numel() * self.mma_meta.element_size())

    @property
    def bytes_per_weight(self) -> float:
        """Bytes per weight of the dense shape (2:4 bf16 on CPU: 1.125, on CUDA with the
        tensor-core metadata as well: 1.25; dense bf16: 2)."""
        rows, cols = self.shape
        return self.nbytes / max(1, rows * cols)

    def _current_versions(self) -> tuple[int, int]:
        return (self.values._version, self.bitmap._version)

    def _check_unmodified(self) -> None:
        if self._current_versions() != self._versions:
            raise ValueError("the NM matrix's values or bitmap were modified in place after validation; "
                             "build a new NM")

    def __repr__(self) -> str:
        return (f"NM(shape={self.shape}, pattern={self.n}:{self.m}, dtype={self.dtype}, "
                f"bytes_per_weight={self.bytes_per_weight:.3f}, device={self.device})")

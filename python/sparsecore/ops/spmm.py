"""CSR / BSR / N:M sparse x dense matmul as torch ops, and the user-facing spmm / sparse_linear.

Each op computes either ``A @ B`` (``linear=False``; B is K x N) or ``x @ A.T + bias``
(``linear=True``; x is ... x K), in the dense operand's dtype with fp32 accumulation. The
kernels read any strides, so neither form copies or transposes its inputs.
"""

from __future__ import annotations

import torch

from .._dtypes import VALUE_DTYPES, dtype_code, index_code, matrix_tuple
from .._native import _C
from ..formats import BSR, CSR, NM
from ..formats.nm import nm_to_dense
from ._library import lib

# row_chunks and bitmap are the plan (bitmap: uint8, empty when the plan has none);
# for BSR, values is nnzb x block_h x block_w; for N:M, values is rows x cols*n/m and
# bitmap rows x bitmap_row_bytes(cols).
_TAIL = "int n_cols, Tensor dense, Tensor? bias, bool linear"
_SCHEMAS = {
    "csr": f"Tensor row_ptr, Tensor col_idx, Tensor values, Tensor row_chunks, Tensor bitmap, {_TAIL}",
    "bsr": f"Tensor row_ptr, Tensor col_idx, Tensor values, Tensor row_chunks, {_TAIL}",
    "nm": f"Tensor values, Tensor bitmap, Tensor mma_meta, int n, int m, {_TAIL}",
}
for _family, _args in _SCHEMAS.items():
    lib.define(f"{_family}_mm({_args}) -> Tensor")
    lib.define(f"{_family}_mm_out({_args}, Tensor(a!) out) -> ()")


def _output_shape(rows: int, n_cols: int, dense: torch.Tensor, linear: bool) -> tuple[int, ...]:
    if linear:
        if dense.dim() < 1 or dense.shape[-1] != n_cols:
            raise ValueError(f"input's last dimension must be the weight's in_features {n_cols}, "
                             f"got shape {tuple(dense.shape)}")
        return (*dense.shape[:-1], rows)
    if dense.dim() != 2 or dense.shape[0] != n_cols:
        raise ValueError(f"dense operand must be 2-D with {n_cols} rows, got shape {tuple(dense.shape)}")
    return (rows, dense.shape[1])


def _operands(dense: torch.Tensor, out: torch.Tensor, linear: bool) -> tuple[tuple, tuple]:
    """Kernel views of B and C: for x @ A.T, B = x^T and C = y^T (swapped strides, no copies)."""
    if not linear:
        return matrix_tuple(dense), matrix_tuple(out)
    x2 = dense if dense.dim() == 2 else dense.reshape(-1, dense.shape[-1])
    if out.dim() == 2:
        y2 = out
    elif out.is_contiguous():
        y2 = out.view(-1, out.shape[-1])
    else:
        raise ValueError("out must be contiguous when it is not 2-D")
    return matrix_tuple(x2, transposed=True), matrix_tuple(y2, transposed=True)


def _prepare(values: torch.Tensor, dense: torch.Tensor, bias: torch.Tensor | None, rows: int, n_cols: int,
             linear: bool, out: torch.Tensor) -> tuple[tuple, tuple, int, int]:
    """Checks shared by both families; returns the kernel views of B and C and the bias pointer/dtype."""
    if dense.dtype not in VALUE_DTYPES:
        raise TypeError(f"dense operand dtype {dense.dtype} is not supported (float32, bfloat16, float16)")
    if dense.device != values.device:
        raise ValueError(f"dense operand is on {dense.device} but the sparse matrix is on {values.device}")
    if bias is not None:
        if bias.dim() != 1 or bias.shape[0] != rows:
            raise ValueError(f"bias must be 1-D with {rows} entries, got shape {tuple(bias.shape)}")
        if bias.device != values.device:
            raise ValueError(f"bias is on {bias.device} but the sparse matrix is on {values.device}")
        dtype_code(bias.dtype, "bias")
        bias = bias.contiguous()
    expected = _output_shape(rows, n_cols, dense, linear)
    if tuple(out.shape) != expected:
        raise ValueError(f"out has shape {tuple(out.shape)}, expected {expected}")
    if out.dtype != dense.dtype or out.device != dense.device:
        raise ValueError(f"out must be {dense.dtype} on {dense.device}, got {out.dtype} on {out.device}")
    b, c = _operands(dense, out, linear)
    return (b, c, *_bias_args(bias))


def _bias_args(bias: torch.Tensor | None) -> tuple[int, int]:
    if bias is None:
        return 0, 0
    return bias.data_ptr(), dtype_code(bias.dtype, "bias")


def _stream(t: torch.Tensor) -> int:
    return torch.cuda.current_stream(t.device).cuda_stream if t.device.type == "cuda" else 0


def _csr_run(row_ptr, col_idx, values, row_chunks, bitmap, n_cols, dense, bias, linear, out):
    rows = row_ptr.numel() - 1
    b, c, bias_ptr, bias_dtype = _prepare(values, dense, bias, rows, n_cols, linear, out)
    on_cuda = values.device.type == "cuda"
    chunks = row_chunks if not on_cuda and row_chunks.device.type == "cpu" else None
    bitmap_ptr = 0
    if bitmap.numel() and not on_cuda:
        if bitmap.dtype != torch.uint8 or bitmap.numel() != rows * _C.bitmap_row_bytes(n_cols):
            raise ValueError("bitmap plan does not match the matrix (uint8, rows x bitmap_row_bytes(cols))")
        bitmap_ptr = bitmap.data_ptr()
    _C.csr_spmm(rows, n_cols, values.numel(), row_ptr.data_ptr(), col_idx.data_ptr(), index_code(col_idx),
                values.data_ptr(), dtype_code(values.dtype, "values"),
                chunks.data_ptr() if chunks is not None else 0, chunks.numel() - 1 if chunks is not None else 0,
                bitmap_ptr, b, bias_ptr, bias_dtype, c, on_cuda, _stream(values))


def _bsr_run(row_ptr, col_idx, values, row_chunks, n_cols, dense, bias, linear, out):
    bh, bw = values.shape[1], values.shape[2]
    block_rows = row_ptr.numel() - 1
    rows = block_rows * bh
    if n_cols % bw:
        raise ValueError(f"n_cols {n_cols} is not a multiple of the block width {bw}")
    if values.device.type != "cpu":
        raise ValueError("the BSR op runs on CPU; on CUDA, BSR matrices run through their CSR form (sparsecore.spmm)")
    b, c, bias_ptr, bias_dtype = _prepare(values, dense, bias, rows, n_cols, linear, out)
    _C.bsr_spmm(block_rows, n_cols // bw, bh, bw, values.shape[0], row_ptr.data_ptr(), col_idx.data_ptr(),
                index_code(col_idx), values.data_ptr(), dtype_code(values.dtype, "values"),
                row_chunks.data_ptr(), row_chunks.numel() - 1, b, bias_ptr, bias_dtype, c)


def _nm_run(values, bitmap, mma_meta, n, m, n_cols, dense, bias, linear, out):
    if values.dim() != 2 or bitmap.dim() != 2 or bitmap.dtype != torch.uint8:
        raise ValueError("N:M values and bitmap must be 2-D, the bitmap uint8")
    rows = values.shape[0]
    if n_cols % m or values.shape[1] != n_cols // m * n or tuple(bitmap.shape) != (rows, _C.bitmap_row_bytes(n_cols)):
        raise ValueError(f"N:M parts do not match a {rows}x{n_cols} {n}:{m} matrix")
    b, c, bias_ptr, bias_dtype = _prepare(values, dense, bias, rows, n_cols, linear, out)
    if values.device.type == "cuda":
        _nm_run_cuda(values, bitmap, mma_meta, n_cols, dense, bias, linear, out, c, bias_ptr, bias_dtype)
        return
    _C.nm_spmm(rows, n_cols, n, m, values.data_ptr(), dtype_code(values.dtype, "values"), bitmap.data_ptr(), b,
               bias_ptr, bias_dtype, c)


def _nm_run_cuda(values, bitmap, mma_meta, n_cols, dense, bias, linear, out, c, bias_ptr, bias_dtype):
    rows = values.shape[0]
    if mma_meta.numel() and dense.dtype == values.dtype:
        # Sparse tensor cores read B k-contiguous (x @ W.T: rows of x); copy only when it is not.
        x2 = dense.reshape(-1, n_cols) if linear else dense.t()
        if x2.stride(-1) != 1 or (x2.shape[0] > 1 and x2.stride(0) % 2) or x2.data_ptr() % 4:
            x2 = x2.contiguous()
        _C.nm24_spmm(rows, n_cols, values.data_ptr(), dtype_code(values.dtype, "values"), mma_meta.data_ptr(),
                     matrix_tuple(x2, transposed=True), bias_ptr, bias_dtype, c, _stream(values))
        return
    # Dense fallback (not 2:4, fp32, shapes off the 16 x 32 tiles, or a dense operand of
    # another dtype): decompress on the GPU and use cuBLAS.
    w = nm_to_dense(values, bitmap, n_cols).to(dense.dtype)
    result = torch.nn.functional.linear(dense, w, None if bias is None else bias.to(dense.dtype)) if linear else w @ dense
    out.copy_(result)


# Rows of the sparse matrix from the op's arguments (the format's tensors first).
_ROWS_OF = {
    "csr": lambda args: args[0].numel() - 1,
    "bsr": lambda args: (args[0].numel() - 1) * args[2].shape[1],
    "nm": lambda args: args[0].shape[0],
}


def _register(op: str, run) -> None:
    # args = the format's arguments followed by n_cols, dense, bias, linear.
    rows_of = _ROWS_OF[op]

    def functional(*args):
        n_cols, dense, _bias, linear = args[-4:]
        out = torch.empty(_output_shape(rows_of(args), n_cols, dense, linear), dtype=dense.dtype, device=dense.device)
        run(*args, out)
        return out

    def out_variant(*args):
        run(*args)

    def fake(*args):
        n_cols, dense, _bias, linear = args[-4:]
        return dense.new_empty(_output_shape(rows_of(args), n_cols, dense, linear))

    def fake_out(*args):
        return None

    devices = ("cpu", "cuda") if op in ("csr", "nm") else ("cpu",)
    for device in devices:
        torch.library.impl(f"sparsecore::{op}_mm", device, lib=lib)(functional)
        torch.library.impl(f"sparsecore::{op}_mm_out", device, lib=lib)(out_variant)
    torch.library.register_fake(f"sparsecore::{op}_mm", lib=lib)(fake)
    torch.library.register_fake(f"sparsecore::{op}_mm_out", lib=lib)(fake_out)


_register("csr", _csr_run)
_register("bsr", _bsr_run)
_register("nm", _nm_run)


def _op_args(a):
    """Resolve a format to (op family, its tensors); on CUDA a BSR runs as its CSR."""
    if isinstance(a, CSR):
        if not torch.compiler.is_compiling():
            a._check_unmodified()
        return "csr", (a.row_ptr, a.col_idx, a.values, a.row_chunks, a.bitmap, a.shape[1])
    if isinstance(a, BSR):
        if not torch.compiler.is_compiling():
            a._check_unmodified()
        if a.device.type == "cuda":
            return _op_args(a._csr_for_cuda)
        return "bsr", (a.row_ptr, a.col_idx, a.values, a.row_chunks, a.shape[1])
    if isinstance(a, NM):
        if not torch.compiler.is_compiling():
            a._check_unmodified()
        return "nm", (a.values, a.bitmap, a.mma_meta, a.n, a.m, a.shape[1])
    raise TypeError(f"expected a sparsecore.CSR, BSR or NM, got {type(a).__name__}")


def _check_dense(t, name: str, a) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.layout != torch.strided:
        raise TypeError(f"{name} must be a dense (strided) tensor, got layout {t.layout}")
    if t.device != a.device:
        raise ValueError(f"{name} is on {t.device} but the sparse matrix is on {a.device}")


def spmm(a, b: torch.Tensor, *, out: torch.Tensor | None = None) -> torch.Tensor:
    """Sparse ``a`` (CSR, BSR or NM, rows x K) times dense ``b`` (K x N, or a K vector).

    The result has ``b``'s dtype (fp32, bf16 or fp16; accumulation in fp32). Any N >= 1,
    any strides. ``out`` (rows x N, ``b``'s dtype and device) receives the result.

    Raises ``ValueError`` for mismatched shapes or devices and for NaN/Inf in ``b``,
    ``TypeError`` for unsupported dtypes.

    Examples
    --------
    >>> import torch, sparsecore
    >>> a = sparsecore.CSR.from_dense(torch.eye(3))
    >>> sparsecore.spmm(a, torch.ones(3, 2)).tolist()
    [[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]
    """
    op, args = _op_args(a)
    _check_dense(b, "b", a)
    vector = b.dim() == 1
    b2 = b.unsqueeze(1) if vector else b
    if out is None:
        result = getattr(torch.ops.sparsecore, f"{op}_mm")(*args, b2, None, False)
        return result.squeeze(1) if vector else result
    _check_dense(out, "out", a)
    out2 = out.unsqueeze(1) if vector else out
    getattr(torch.ops.sparsecore, f"{op}_mm_out")(*args, b2, None, False, out2)
    return out


def sparse_linear(x: torch.Tensor, weight, bias: torch.Tensor | None = None, *,
                  out: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight.T + bias`` with a sparse ``weight`` (CSR, BSR or NM, out_features x in_features).

    ``x`` has shape (..., in_features); the result (..., out_features) has ``x``'s dtype.
    This is the form every ``nn.Linear`` needs: decode (one token) runs the GEMV kernel,
    prefill the SpMM kernel, neither copies ``x``.

    Examples
    --------
    >>> import torch, sparsecore
    >>> w = sparsecore.CSR.from_dense(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    >>> sparsecore.sparse_linear(torch.tensor([[3.0, 4.0]]), w).tolist()
    [[3.0, 8.0]]
    """
    op, args = _op_args(weight)
    _check_dense(x, "x", weight)
    if bias is not None:
        _check_dense(bias, "bias", weight)
    if out is None:
        return getattr(torch.ops.sparsecore, f"{op}_mm")(*args, x, bias, True)
    _check_dense(out, "out", weight)
    getattr(torch.ops.sparsecore, f"{op}_mm_out")(*args, x, bias, True, out)
    return out

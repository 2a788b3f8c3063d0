"""Checks and plumbing shared by every op family (spmm, nm, act).

The raw ops (``torch.ops.sparsecore.*``) are public: every tensor they receive is checked
here in O(1) (type, dtype, dimensions, size, contiguity, device) before a pointer reaches
the kernels, and the kernels check the contents they index with as they read them.
Temporaries made here (a reshaped input, a contiguous bias) are returned to the caller,
which keeps them alive until the kernel has run.
"""

from __future__ import annotations

import contextlib

import torch

from .._dtypes import VALUE_DTYPES, dtype_code, matrix_tuple


def require(t, name: str, *, dtype=None, ndim: int | None = None, numel: int | None = None,
            device: torch.device | None = None, contiguous: bool = True) -> torch.Tensor:
    """One tensor argument of a raw op: a dense torch.Tensor of the given dtype(s), rank, size and device."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.layout != torch.strided:
        raise TypeError(f"{name} must be a dense (strided) tensor, got layout {t.layout}")
    if dtype is not None:
        allowed = dtype if isinstance(dtype, tuple) else (dtype,)
        if t.dtype not in allowed:
            names = ", ".join(str(d).replace("torch.", "") for d in allowed)
            raise TypeError(f"{name} dtype {t.dtype} is not supported (expected {names})")
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(t.shape)}")
    if numel is not None and t.numel() != numel:
        raise ValueError(f"{name} must hold {numel} elements, got {t.numel()} (shape {tuple(t.shape)})")
    if device is not None and t.device != device:
        raise ValueError(f"{name} is on {t.device}, but the sparse matrix is on {device}")
    if contiguous and not t.is_contiguous():
        raise ValueError(f"{name} must be contiguous")
    return t


def output_shape(rows: int, n_cols: int, dense: torch.Tensor, linear: bool) -> tuple[int, ...]:
    if linear:
        if dense.dim() < 1 or dense.shape[-1] != n_cols:
            raise ValueError(f"input's last dimension must be the weight's in_features {n_cols}, "
                             f"got shape {tuple(dense.shape)}")
        return (*dense.shape[:-1], rows)
    if dense.dim() != 2 or dense.shape[0] != n_cols:
        raise ValueError(f"dense operand must be 2-D with {n_cols} rows, got shape {tuple(dense.shape)}")
    return (rows, dense.shape[1])


class Operands:
    """Kernel views of B and C (and the bias) for one call, and the call's tensors. ``keep``
    holds every temporary tensor whose pointer is in a view: it must outlive the kernel call."""

    def __init__(self, b: tuple, c: tuple, bias_ptr: int, bias_dtype: int, keep: list, call: tuple):
        self.b, self.c, self.bias_ptr, self.bias_dtype, self.keep = b, c, bias_ptr, bias_dtype, keep
        self.dense, self.bias, self.linear, self.out = call


def prepare(device: torch.device, dense: torch.Tensor, bias: torch.Tensor | None, rows: int, n_cols: int,
            linear: bool, out: torch.Tensor, out_is_fresh: bool = False) -> Operands:
    """Checks shared by the matmul families; x @ A.T reads x^T and writes y^T (swapped strides).
    ``out_is_fresh``: ``out`` was just allocated by the caller from ``output_shape`` with
    ``dense``'s dtype and device (its checks would repeat that)."""
    require(dense, "dense operand", dtype=VALUE_DTYPES, device=device, contiguous=False)
    keep = []
    if bias is not None:
        require(bias, "bias", dtype=VALUE_DTYPES, ndim=1, numel=rows, device=device, contiguous=False)
        bias = bias.contiguous()
        keep.append(bias)
    if not out_is_fresh:
        expected = output_shape(rows, n_cols, dense, linear)
        require(out, "out", contiguous=False)
        if tuple(out.shape) != expected:
            raise ValueError(f"out has shape {tuple(out.shape)}, expected {expected}")
        if out.dtype != dense.dtype or out.device != dense.device:
            raise ValueError(f"out must be {dense.dtype} on {dense.device}, got {out.dtype} on {out.device}")
    if not linear:
        b, c = matrix_tuple(dense), matrix_tuple(out)
    else:
        # reshape copies a non-viewable input (a permuted or expanded N-D x): the copy
        # goes into keep, so its memory lives until the kernel has read it.
        x2 = dense if dense.dim() == 2 else dense.reshape(-1, dense.shape[-1])
        keep.append(x2)
        if out.dim() == 2:
            y2 = out
        elif out.is_contiguous():
            y2 = out.view(-1, out.shape[-1])
        else:
            raise ValueError("out must be contiguous when it is not 2-D")
        b, c = matrix_tuple(x2, transposed=True), matrix_tuple(y2, transposed=True)
    ptr, code = (0, 0) if bias is None else (bias.data_ptr(), dtype_code(bias.dtype, "bias"))
    return Operands(b, c, ptr, code, keep, (dense, bias, linear, out))


def stream_of(t: torch.Tensor) -> int:
    """The caller's current CUDA stream on t's device (never the null stream), or 0 on CPU."""
    return torch.cuda.current_stream(t.device).cuda_stream if t.device.type == "cuda" else 0


def on_device(t: torch.Tensor):
    """Makes t's GPU the current device for the kernel launch (a no-op on CPU): tensors on
    cuda:1 must not launch on cuda:0."""
    return torch.cuda.device(t.device) if t.device.type == "cuda" else contextlib.nullcontext()

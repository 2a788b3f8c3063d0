"""The user-facing ops over any sparsecore format: :func:`spmm` (``A @ B``) and
:func:`sparse_linear` (``x @ W.T + b``). They pick the op family from the format and pass
its tensors to the raw op (``torch.ops.sparsecore.{csr,bsr,nm}_mm``)."""

from __future__ import annotations

import torch

from ..formats import BSR, CSR, NM
from ._library import has_cpu_kernel, run_checked
from .nm import dense_fallback


def _op_args(a):
    """Resolve a format to (op family, its tensors); on CUDA a BSR runs as its CSR."""
    if isinstance(a, (CSR, BSR, NM)) and not torch.compiler.is_compiling():
        a._check_unmodified()
    if isinstance(a, CSR):
        return "csr", (a.row_ptr, a.col_idx, a.values, a.row_chunks, a.bitmap, a.shape[1])
    if isinstance(a, BSR):
        if a.device.type == "cuda":
            return _op_args(a.csr_for_cuda())
        return "bsr", (a.row_ptr, a.col_idx, a.values, a.row_chunks, a.shape[1])
    if isinstance(a, NM):
        return "nm", (a.values, a.bitmap, a.mma_meta, a.n, a.m, a.shape[1])
    raise TypeError(f"expected a sparsecore.CSR, BSR or NM, got {type(a).__name__}")


def _eager_cpu_inference(x: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """True where nothing needs the dispatcher's view of the call: a plain CPU tensor, no
    gradient wanted, not compiling, no torch function or dispatch mode (FakeTensor,
    FlopCounterMode, functionalization) active. The dispatcher's round trip to the op's
    Python implementation costs about 20 us a call, a third of a small layer's decode time
    (210 calls a token in SmolLM2), so such calls go to that implementation directly: the
    same checks, the same kernel."""
    return (type(x) is torch.Tensor and x.device.type == "cpu"
            and not (torch.is_grad_enabled() and (x.requires_grad or (bias is not None and bias.requires_grad)))
            and not torch.compiler.is_compiling() and not torch._C._is_torch_function_mode_enabled()
            and torch._C._len_torch_dispatch_stack() == 0)


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
    any strides. ``out`` (rows x N, ``b``'s dtype and device) receives the result. A NaN
    or Inf in a column of ``b`` makes that whole column of the result NaN (see the README).

    Raises ``ValueError`` for mismatched shapes or devices, ``TypeError`` for unsupported
    dtypes.

    Examples
    --------
    >>> import torch, sparsecore
    >>> a = sparsecore.CSR.from_dense(torch.eye(3))
    >>> sparsecore.spmm(a, torch.ones(3, 2)).tolist()
    [[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]
    """
    _check_dense(b, "b", a)
    vector = b.dim() == 1
    b2 = b.unsqueeze(1) if vector else b
    if isinstance(a, NM) and a.device.type == "cuda" and not a.runs_on_tensor_cores(b.dtype):
        result = dense_fallback(b2, a.dense_for(torch.float32), None, False)
        if out is None:
            return result.squeeze(1) if vector else result
        _check_dense(out, "out", a)
        (out.unsqueeze(1) if vector else out).copy_(result)
        return out
    op, args = _op_args(a)
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

    ``x`` has shape (..., in_features), any strides; the result (..., out_features) has
    ``x``'s dtype. This is the form every ``nn.Linear`` needs: decode (one token) runs the
    GEMV kernel, prefill the SpMM kernel, neither copies a 2-D ``x``. A NaN or Inf in a row
    of ``x`` makes that row of the result NaN.

    Examples
    --------
    >>> import torch, sparsecore
    >>> w = sparsecore.CSR.from_dense(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    >>> sparsecore.sparse_linear(torch.tensor([[3.0, 4.0]]), w).tolist()
    [[3.0, 8.0]]
    """
    _check_dense(x, "x", weight)
    if bias is not None:
        _check_dense(bias, "bias", weight)
    if isinstance(weight, NM) and weight.device.type == "cuda" and not weight.runs_on_tensor_cores(x.dtype):
        # cuBLAS on the dense form, decompressed once (fp32) and kept (NM.dense_for).
        result = dense_fallback(x, weight.dense_for(torch.float32), bias, True)
        if out is None:
            return result
        _check_dense(out, "out", weight)
        out.copy_(result)
        return out
    op, args = _op_args(weight)
    if out is None:
        if has_cpu_kernel(op) and weight.device.type == "cpu" and _eager_cpu_inference(x, bias):
            if torch.autograd.profiler._is_profiler_enabled:  # profiles still name the op
                with torch.profiler.record_function(f"sparsecore::{op}_mm"):
                    return run_checked(op, weight, args, x, bias, True)
            return run_checked(op, weight, args, x, bias, True)
        return getattr(torch.ops.sparsecore, f"{op}_mm")(*args, x, bias, True)
    _check_dense(out, "out", weight)
    getattr(torch.ops.sparsecore, f"{op}_mm_out")(*args, x, bias, True, out)
    return out

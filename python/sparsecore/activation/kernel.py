"""The activation-sparse linear kernel as a torch op: ``y = (x * m) @ W.T + b``.

``m`` keeps the input channels whose score ``|x_j| * scale_j`` is above a threshold
(``scale`` is None for TEAL, the weight's column norms for WINA and R-Sparse), decided
inside the kernel per row of ``x``: the weight columns of the dropped channels are never
read. The weight is packed once (:func:`pack_weight`: transposed, one contiguous run per
input channel). Any batch shape, fp32/bf16/fp16, CPU (AVX2 / AVX-512 / scalar) and CUDA.

NaN or Inf in ``x`` never count as small: on CPU they raise ``ValueError``; on CUDA
(where checking would cost a device sync) they always count as active, so they reach ``y``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .._dtypes import VALUE_DTYPES, dtype_code, matrix_tuple
from .._native import _C
from ..ops._library import lib

ACT_TILE = int(_C.ACT_TILE)

ACT_VALUE_PAD = int(_C.ACT_VALUE_PAD)
# Weights from this size on ask for transparent huge pages (fewer TLB misses between runs).
_HUGE_PAGE_MIN_BYTES = 4 << 20

# packed: pack_weight's (in x out_padded) layout, or with bitmap/offsets the 1-D stored
# values of pack_weight_sparse.
lib.define("act_linear(Tensor packed, Tensor? bitmap, Tensor? offsets, int in_features, int out_features, "
           "float threshold, Tensor? scale, Tensor? bias, bool complement, Tensor x) -> Tensor")


def pack_weight(weight: torch.Tensor) -> torch.Tensor:
    """The kernel layout of a dense ``weight`` (out x in): ``W.T`` with out padded to 32, zeros after."""
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D (out_features x in_features), got shape {tuple(weight.shape)}")
    dtype_code(weight.dtype, "weight")
    out, in_ = weight.shape
    padded = -(-out // ACT_TILE) * ACT_TILE
    packed = torch.empty(in_, padded, dtype=weight.dtype, device=weight.device)
    if packed.device.type == "cpu" and packed.numel() * packed.element_size() >= _HUGE_PAGE_MIN_BYTES:
        _C.advise_huge_pages(packed.data_ptr(), packed.numel() * packed.element_size())  # before the first write
    packed[:, out:] = 0
    packed[:, :out] = weight.detach().t()
    return packed


def unpack_weight(packed: torch.Tensor, out_features: int) -> torch.Tensor:
    """The dense (out x in) weight back from :func:`pack_weight`'s layout."""
    return packed[:, :out_features].t().contiguous()


def pack_weight_sparse(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A pruned ``weight`` (out x in, CPU) as weight-sparse runs: ``(values, bitmap, offsets)``.

    Run j keeps only the nonzeros of ``W[:, j]`` plus one bit per output, so activation
    sparsity (skipped runs) and weight sparsity (short runs) both cut the bytes read.
    """
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D (out_features x in_features), got shape {tuple(weight.shape)}")
    if weight.device.type != "cpu":
        raise ValueError("weight-sparse runs are packed on the CPU")
    dtype_code(weight.dtype, "weight")
    w = weight.detach()
    out, in_ = w.shape
    count = _C.act_bitmap_values(matrix_tuple(w))
    values = torch.empty(count + ACT_VALUE_PAD, dtype=w.dtype)
    if values.numel() * values.element_size() >= _HUGE_PAGE_MIN_BYTES:
        _C.advise_huge_pages(values.data_ptr(), values.numel() * values.element_size())
    bitmap = torch.empty(in_ * _C.act_bitmap_row_bytes(out) + 2, dtype=torch.uint8)
    offsets = torch.empty(in_ * _C.act_offset_slots(out), dtype=torch.int64)
    _C.act_pack_bitmap(matrix_tuple(w), bitmap.data_ptr(), offsets.data_ptr(), values.data_ptr())
    return values, bitmap, offsets


def unpack_weight_sparse(values: torch.Tensor, bitmap: torch.Tensor, out_features: int,
                         in_features: int) -> torch.Tensor:
    """The dense (out x in) weight back from :func:`pack_weight_sparse`'s layout."""
    row_bytes = _C.act_bitmap_row_bytes(out_features)
    bits = bitmap[: in_features * row_bytes].view(in_features, row_bytes).cpu()
    mask = torch.from_numpy(np.unpackbits(bits.numpy(), axis=1, bitorder="little").astype(bool))
    dense = torch.zeros(in_features, row_bytes * 8, dtype=values.dtype)
    dense[mask] = values[: int(mask.sum())].cpu()
    return dense[:, :out_features].t().contiguous().to(values.device)


def _check_sparse_runs(packed, bitmap, offsets, in_, out_features) -> None:
    if bitmap is None and offsets is None:
        if packed.dim() != 2 or tuple(packed.shape) != (in_, -(-out_features // ACT_TILE) * ACT_TILE):
            raise ValueError(f"packed weight of shape {tuple(packed.shape)} does not hold a {out_features} x {in_} "
                             f"weight (expected {in_} x {-(-out_features // ACT_TILE) * ACT_TILE}; use pack_weight)")
        return
    if bitmap is None or offsets is None:
        raise ValueError("weight-sparse runs need both bitmap and offsets")
    if bitmap.dtype != torch.uint8 or bitmap.numel() != in_ * _C.act_bitmap_row_bytes(out_features) + 2:
        raise ValueError("bitmap does not match the weight (uint8, in x act_bitmap_row_bytes(out) + 2)")
    if offsets.dtype != torch.int64 or offsets.numel() != in_ * _C.act_offset_slots(out_features):
        raise ValueError("offsets do not match the weight (int64, in x act_offset_slots(out))")
    if packed.dim() != 1 or packed.numel() < ACT_VALUE_PAD:
        raise ValueError("weight-sparse values must be 1-D and padded (use pack_weight_sparse)")
    if not (bitmap.is_contiguous() and offsets.is_contiguous()):
        raise ValueError("bitmap and offsets must be contiguous")
    if packed.device.type != "cpu" or bitmap.device.type != "cpu" or offsets.device.type != "cpu":
        raise ValueError("weight-sparse runs run on the CPU")


def _check(packed: torch.Tensor, bitmap, offsets, in_: int, out_features: int, threshold: float, scale, bias,
           x: torch.Tensor) -> None:
    _check_sparse_runs(packed, bitmap, offsets, in_, out_features)
    if not packed.is_contiguous():
        raise ValueError("packed weight must be contiguous")
    if x.dtype not in VALUE_DTYPES:
        raise TypeError(f"input dtype {x.dtype} is not supported (float32, bfloat16, float16)")
    if packed.dtype not in VALUE_DTYPES:
        raise TypeError(f"packed weight dtype {packed.dtype} is not supported")
    if x.dim() < 1 or x.shape[-1] != in_:
        raise ValueError(f"input's last dimension must be in_features {in_}, got shape {tuple(x.shape)}")
    if x.device != packed.device:
        raise ValueError(f"input is on {x.device} but the weight is on {packed.device}")
    if math.isnan(threshold):
        raise ValueError("threshold is NaN")
    if scale is not None:
        if scale.dtype != torch.float32 or tuple(scale.shape) != (in_,) or not scale.is_contiguous():
            raise ValueError(f"scale must be a contiguous float32 vector of {in_} entries, got "
                             f"{scale.dtype} {tuple(scale.shape)}")
        if scale.device != packed.device:
            raise ValueError(f"scale is on {scale.device} but the weight is on {packed.device}")
    if bias is not None:
        if tuple(bias.shape) != (out_features,) or bias.device != packed.device:
            raise ValueError(f"bias must have shape ({out_features},) on {packed.device}, got "
                             f"{tuple(bias.shape)} on {bias.device}")
        dtype_code(bias.dtype, "bias")


def _run(packed, bitmap, offsets, in_, out_features, threshold, scale, bias, complement, x):
    _check(packed, bitmap, offsets, in_, out_features, threshold, scale, bias, x)
    x2 = x.reshape(-1, in_)
    y = torch.empty(x2.shape[0], out_features, dtype=x.dtype, device=x.device)
    on_cuda = x.device.type == "cuda"
    bias_c = bias.contiguous() if bias is not None else None
    stream = torch.cuda.current_stream(x.device).cuda_stream if on_cuda else 0
    _C.act_linear(out_features, in_, packed.data_ptr(), dtype_code(packed.dtype, "packed weight"),
                  bitmap.data_ptr() if bitmap is not None else 0, offsets.data_ptr() if offsets is not None else 0,
                  float(threshold),
                  scale.data_ptr() if scale is not None else 0, bool(complement), matrix_tuple(x2),
                  bias_c.data_ptr() if bias_c is not None else 0,
                  dtype_code(bias_c.dtype, "bias") if bias_c is not None else 0, matrix_tuple(y), on_cuda, stream)
    return y.reshape(*x.shape[:-1], out_features)


def _fake(packed, bitmap, offsets, in_, out_features, threshold, scale, bias, complement, x):
    return x.new_empty(*x.shape[:-1], out_features)


for _device in ("cpu", "cuda"):
    torch.library.impl("sparsecore::act_linear", _device, lib=lib)(_run)
torch.library.register_fake("sparsecore::act_linear", lib=lib)(_fake)


def act_sparse_linear(x: torch.Tensor, packed: torch.Tensor, out_features: int, threshold: float, *,
                      scale: torch.Tensor | None = None, bias: torch.Tensor | None = None,
                      complement: bool = False, sparse_runs: tuple[torch.Tensor, torch.Tensor] | None = None,
                      in_features: int | None = None) -> torch.Tensor:
    """``(x * m) @ W.T + bias`` with ``m = |x| * scale > threshold`` (``complement``: the other channels).

    ``packed`` is :func:`pack_weight` of W; ``x`` is (..., in_features) in fp32/bf16/fp16 and
    the result (..., out_features) has ``x``'s dtype, fp32 accumulation. For a pruned W
    packed by :func:`pack_weight_sparse`, pass its values as ``packed``,
    ``sparse_runs=(bitmap, offsets)`` and ``in_features``.

    Examples
    --------
    >>> import torch
    >>> from sparsecore.activation import act_sparse_linear, pack_weight
    >>> w = torch.eye(3)
    >>> act_sparse_linear(torch.tensor([[0.1, -2.0, 3.0]]), pack_weight(w), 3, 0.5).tolist()
    [[0.0, -2.0, 3.0]]
    """
    if sparse_runs is None:
        bitmap = offsets = None
        in_features = packed.shape[0] if packed.dim() == 2 else -1
    else:
        bitmap, offsets = sparse_runs
        if in_features is None:
            raise ValueError("weight-sparse runs need in_features")
    return torch.ops.sparsecore.act_linear(packed, bitmap, offsets, int(in_features), out_features, float(threshold),
                                           scale, bias, complement, x)


def reference_act_linear(x: torch.Tensor, weight: torch.Tensor, threshold: float, *,
                         scale: torch.Tensor | None = None, bias: torch.Tensor | None = None,
                         complement: bool = False) -> torch.Tensor:
    """The same product in plain torch (float64 accumulation): the tests' oracle and the path
    for devices and dtypes the kernels do not cover."""
    xd = x.to(torch.float64)
    score = xd.abs() * (scale.to(torch.float64) if scale is not None else 1.0)
    big = ~(score <= threshold)  # NaN / Inf stay active
    keep = ~big if complement else big
    y = (xd * keep) @ weight.to(torch.float64).t()
    if bias is not None:
        y = y + bias.to(torch.float64)
    return y.to(x.dtype)

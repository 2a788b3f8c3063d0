"""The activation-sparse linear kernel as a torch op: ``sparsecore::act_linear``.

``y = (x * m) @ W.T + b`` where ``m`` keeps the input channels whose score
``|x_j| * scale_j`` is above a threshold (``scale`` is None for TEAL, the weight's column
norms for WINA and R-Sparse), decided inside the kernel per row of ``x``: the weight
columns of the dropped channels are never read. The weight comes packed by
:func:`sparsecore.activation.pack_weight` (transposed, one contiguous run per input
channel) or, pruned, as weight-sparse runs (:func:`~sparsecore.activation.pack_weight_sparse`).

NaN or Inf in ``x`` are never dropped as small; a row of ``x`` holding one gives a NaN
row of ``y`` on every device (the rule of all sparsecore matmuls).

Determinism: the CPU kernel gives the same bits on every run. The CUDA kernel adds the
partial sums of its channel chunks with atomics, so results may differ between runs in
the last bits.
"""

from __future__ import annotations

import math

import torch

from .._dtypes import VALUE_DTYPES, dtype_code, matrix_tuple
from .._native import _C
from ._common import on_device, require, stream_of
from ._library import lib

ACT_TILE = int(_C.ACT_TILE)
ACT_VALUE_PAD = int(_C.ACT_VALUE_PAD)

# packed: pack_weight's (in x out_padded) layout, or with bitmap/offsets the 1-D stored
# values of pack_weight_sparse.
lib.define("act_linear(Tensor packed, Tensor? bitmap, Tensor? offsets, int in_features, int out_features, "
           "float threshold, Tensor? scale, Tensor? bias, bool complement, Tensor x) -> Tensor")


def out_padded(out_features: int) -> int:
    return -(-out_features // ACT_TILE) * ACT_TILE


def _check(packed, bitmap, offsets, in_: int, out_features: int, threshold: float, scale, bias, x) -> None:
    if in_ < 0 or out_features < 0:
        raise ValueError(f"in_features and out_features must be >= 0, got {in_} and {out_features}")
    require(packed, "packed weight", dtype=VALUE_DTYPES)
    device = packed.device
    if bitmap is None and offsets is None:
        if packed.dim() != 2 or tuple(packed.shape) != (in_, out_padded(out_features)):
            raise ValueError(f"packed weight of shape {tuple(packed.shape)} does not hold a {out_features} x {in_} "
                             f"weight (expected {in_} x {out_padded(out_features)}; use pack_weight)")
    else:
        if bitmap is None or offsets is None:
            raise ValueError("weight-sparse runs need both bitmap and offsets")
        if device.type != "cpu":
            raise ValueError("weight-sparse runs run on the CPU")
        require(bitmap, "bitmap", dtype=torch.uint8, ndim=1, device=device,
                numel=in_ * _C.act_bitmap_row_bytes(out_features) + 2)
        require(offsets, "offsets", dtype=torch.int64, ndim=1, device=device,
                numel=in_ * _C.act_offset_slots(out_features))
        if packed.dim() != 1 or packed.numel() < ACT_VALUE_PAD:
            raise ValueError(f"weight-sparse values must be 1-D and padded with {ACT_VALUE_PAD} entries "
                             "(use pack_weight_sparse)")
    require(x, "input", dtype=VALUE_DTYPES, device=device, contiguous=False)
    if x.dim() < 1 or x.shape[-1] != in_:
        raise ValueError(f"input's last dimension must be in_features {in_}, got shape {tuple(x.shape)}")
    if math.isnan(threshold):
        raise ValueError("threshold is NaN")
    if scale is not None:
        require(scale, "scale", dtype=torch.float32, ndim=1, numel=in_, device=device)
    if bias is not None:
        require(bias, "bias", dtype=VALUE_DTYPES, ndim=1, numel=out_features, device=device, contiguous=False)


def _run(packed, bitmap, offsets, in_, out_features, threshold, scale, bias, complement, x):
    _check(packed, bitmap, offsets, in_, out_features, threshold, scale, bias, x)
    x2 = x.reshape(-1, in_)
    y = torch.empty(x2.shape[0], out_features, dtype=x.dtype, device=x.device)
    on_cuda = x.device.type == "cuda"
    bias_c = bias.contiguous() if bias is not None else None
    value_count = packed.numel() - ACT_VALUE_PAD if bitmap is not None else packed.numel()
    with on_device(x):
        _C.act_linear(out_features, in_, packed.data_ptr(), dtype_code(packed.dtype, "packed weight"),
                      bitmap.data_ptr() if bitmap is not None else 0,
                      offsets.data_ptr() if offsets is not None else 0, value_count, float(threshold),
                      scale.data_ptr() if scale is not None else 0, bool(complement), matrix_tuple(x2),
                      bias_c.data_ptr() if bias_c is not None else 0,
                      dtype_code(bias_c.dtype, "bias") if bias_c is not None else 0, matrix_tuple(y), on_cuda,
                      stream_of(x))
    return y.reshape(*x.shape[:-1], out_features)


def _fake(packed, bitmap, offsets, in_, out_features, threshold, scale, bias, complement, x):
    return x.new_empty(*x.shape[:-1], out_features)


for _device in ("cpu", "cuda"):
    torch.library.impl("sparsecore::act_linear", _device, lib=lib)(_run)
torch.library.register_fake("sparsecore::act_linear", lib=lib)(_fake)

# W^T (in_features x out_features) written densely from weight-sparse runs: the prefill
# path of a layer for which the dense GEMM measured faster at that prompt length.
lib.define("act_unpack_runs(Tensor values, Tensor bitmap, Tensor offsets, int in_features, int out_features) "
           "-> Tensor")


@torch.library.impl("sparsecore::act_unpack_runs", "cpu", lib=lib)
def _unpack_runs(values, bitmap, offsets, in_, out_features):
    require(values, "values", dtype=VALUE_DTYPES, ndim=1, device=torch.device("cpu"))
    if in_ < 0 or out_features < 0:
        raise ValueError(f"in_features and out_features must be >= 0, got {in_} and {out_features}")
    if values.numel() < ACT_VALUE_PAD:
        raise ValueError(f"weight-sparse values must be padded with {ACT_VALUE_PAD} entries (use pack_weight_sparse)")
    require(bitmap, "bitmap", dtype=torch.uint8, ndim=1, device=values.device,
            numel=in_ * _C.act_bitmap_row_bytes(out_features) + 2)
    require(offsets, "offsets", dtype=torch.int64, ndim=1, device=values.device,
            numel=in_ * _C.act_offset_slots(out_features))
    wt = torch.empty(in_, out_features, dtype=values.dtype)
    _C.act_unpack_bitmap(out_features, in_, values.data_ptr(), dtype_code(values.dtype, "values"), bitmap.data_ptr(),
                         offsets.data_ptr(), values.numel() - ACT_VALUE_PAD, matrix_tuple(wt))
    return wt


@torch.library.register_fake("sparsecore::act_unpack_runs", lib=lib)
def _unpack_runs_fake(values, bitmap, offsets, in_, out_features):
    return values.new_empty(in_, out_features)


def act_sparse_linear(x: torch.Tensor, packed: torch.Tensor, out_features: int, threshold: float, *,
                      scale: torch.Tensor | None = None, bias: torch.Tensor | None = None,
                      complement: bool = False, sparse_runs: tuple[torch.Tensor, torch.Tensor] | None = None,
                      in_features: int | None = None) -> torch.Tensor:
    """``(x * m) @ W.T + bias`` with ``m = |x| * scale > threshold`` (``complement``: the other channels).

    ``packed`` is :func:`~sparsecore.activation.pack_weight` of W; ``x`` is (..., in_features)
    in fp32/bf16/fp16 and the result (..., out_features) has ``x``'s dtype, fp32
    accumulation. For a pruned W packed by :func:`~sparsecore.activation.pack_weight_sparse`,
    pass its values as ``packed``, ``sparse_runs=(bitmap, offsets)`` and ``in_features``.

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

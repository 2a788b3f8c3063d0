"""``ActSparseLinear``: an ``nn.Linear`` that skips the weight columns of its small inputs."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .._dtypes import VALUE_DTYPES
from .kernel import (act_sparse_linear, pack_weight, pack_weight_sparse, reference_act_linear, unpack_weight,
                     unpack_weight_sparse)

PREFILL_MODES = ("sparse", "dense", "tail")
# From this many rows on, fp32 layers run through torch's GEMM (MKL) on the packed
# weight seen as W.T (a strided view, no copy): at prefill sizes a tuned dense GEMM
# on the masked input beats skipping columns row by row (measured 1536x576: N = 64,
# 3.1 ms sparsecore vs 2.1 dense; N = 256, 13.3 vs 6.8 masked MKL). bf16/fp16 stay on the
# sparsecore kernel until measured (activation/tune.py): torch's CPU bf16 GEMM is 4x slower
# than fp32 on AVX2-only CPUs and 4x faster on CPUs with AVX512-BF16.
_GEMM_MIN_ROWS_FP32 = 64
_DEFAULT = object()  # gemm_from_tokens not measured: the rule above


def dense_weight(module: nn.Module) -> torch.Tensor:
    """The (out x in) weight of an nn.Linear or SparseLinear as a dense tensor."""
    w = module.weight
    return w.detach() if isinstance(w, torch.Tensor) else w.to_dense()


@dataclass(frozen=True)
class PrefillPolicy:
    """What a forward over several tokens of a sequence (prefill) does.

    ``"sparse"``: every token is thresholded, as in decode (how the papers measure
    perplexity). ``"dense"``: prefill runs dense. ``"tail"`` (TEAL's choice for long
    prompts): the first ``dense_fraction`` of the tokens run dense, the rest sparse.
    One-token forwards (decode) are always sparse.
    """

    mode: str = "tail"
    dense_fraction: float = 0.5

    def __post_init__(self):
        if self.mode not in PREFILL_MODES:
            raise ValueError(f"prefill mode must be one of {', '.join(PREFILL_MODES)}, got {self.mode!r}")
        if not 0.0 <= self.dense_fraction <= 1.0:
            raise ValueError(f"prefill dense_fraction must be in [0, 1], got {self.dense_fraction}")

    def dense_tokens(self, tokens: int) -> int:
        if tokens <= 1 or self.mode == "sparse":
            return 0
        if self.mode == "dense":
            return tokens
        return int(tokens * self.dense_fraction)


class ActSparseLinear(nn.Module):
    """``y = (x * m) @ W.T + b``, ``m = |x| * scale > threshold``, plus an optional rank-r path.

    TEAL: ``scale`` is None. WINA: ``scale = ||W[:, j]||_2``. R-Sparse adds
    ``y += ((x * (1 - m)) @ V_r.T) @ US_r.T`` (``lowrank = (V_r, US_r)``, the SVD of W):
    the channels the threshold drops go through a rank-r approximation of W instead of
    being lost. The weight is held only in the kernel's packed layout; with
    ``weight_sparse=True`` (a pruned weight) as weight-sparse runs, so both sparsities cut
    the bytes read (CPU; elsewhere the layer runs the reference path).

    Examples
    --------
    >>> import torch
    >>> from sparsecore.activation import ActSparseLinear
    >>> lin = torch.nn.Linear(16, 8)
    >>> act = ActSparseLinear.from_linear(lin, threshold=0.5)
    >>> act(torch.randn(3, 16)).shape
    torch.Size([3, 8])
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, threshold: float, *,
                 scale: torch.Tensor | None = None, lowrank: tuple[torch.Tensor, torch.Tensor] | None = None,
                 prefill: PrefillPolicy = PrefillPolicy(), method: str = "teal", target_sparsity: float | None = None,
                 weight_sparse: bool = False):
        super().__init__()
        if weight.dim() != 2:
            raise ValueError(f"weight must be 2-D, got shape {tuple(weight.shape)}")
        self.out_features, self.in_features = weight.shape
        threshold = float(threshold)
        if math.isnan(threshold):
            raise ValueError("threshold is NaN")
        if not torch.isfinite(weight).all():
            raise ValueError("weight contains NaN or Inf")
        self.threshold = threshold
        self.prefill = prefill
        self.method = method
        self.target_sparsity = target_sparsity
        if weight_sparse:
            values, bitmap, offsets = pack_weight_sparse(weight.cpu())
            self.register_buffer("packed", values.to(weight.device), persistent=False)
            self.register_buffer("runs_bitmap", bitmap, persistent=False)
            self.register_buffer("runs_offsets", offsets, persistent=False)
        else:
            self.register_buffer("packed", pack_weight(weight), persistent=False)
            self.runs_bitmap = self.runs_offsets = None
        if scale is not None:
            if tuple(scale.shape) != (self.in_features,) or not torch.isfinite(scale).all() or (scale < 0).any():
                raise ValueError(f"scale must hold {self.in_features} finite non-negative values")
            scale = scale.detach().to(torch.float32).contiguous()
        self.register_buffer("scale", scale, persistent=False)
        self.rank = 0
        self.register_buffer("lowrank_down", None, persistent=False)
        self.register_buffer("lowrank_up", None, persistent=False)
        if lowrank is not None:
            down, up = lowrank
            if down.dim() != 2 or up.dim() != 2 or down.shape[1] != self.in_features or \
                    up.shape != (self.out_features, down.shape[0]):
                raise ValueError(f"lowrank must be (V_r: r x {self.in_features}, US_r: {self.out_features} x r), "
                                 f"got {tuple(down.shape)} and {tuple(up.shape)}")
            self.rank = down.shape[0]
            if self.rank:
                # Both factors in the kernel layout: the down projection reads only the
                # dropped channels' rows (complement selection), the up projection is a
                # dense pass at the kernel's bandwidth (torch's bf16 GEMV is slow on CPU).
                self.lowrank_down = pack_weight(down.to(weight.dtype))
                self.lowrank_up = pack_weight(up.to(weight.dtype))
        self.bias = nn.Parameter(bias.detach().clone(), requires_grad=False) if bias is not None else None

    @classmethod
    def from_linear(cls, linear: nn.Module, threshold: float, **kwargs) -> "ActSparseLinear":
        """From an ``nn.Linear``, or a pruned :class:`~sparsecore.nn.SparseLinear` (kept
        weight-sparse unless ``weight_sparse=False``)."""
        from ..nn import SparseLinear

        if isinstance(linear, SparseLinear):
            kwargs.setdefault("weight_sparse", True)
        elif not isinstance(linear, nn.Linear):
            raise TypeError(f"activation sparsity applies to nn.Linear (or SparseLinear) layers, "
                            f"got {type(linear).__name__}")
        return cls(dense_weight(linear), linear.bias, threshold, **kwargs)

    @property
    def weight_sparse(self) -> bool:
        """Whether the weight is pruned (held as weight-sparse runs on the CPU; densely packed
        on a GPU, where the runs layout has no kernel)."""
        return self.runs_bitmap is not None or getattr(self, "_runs_on_cpu", False)

    @property
    def weight(self) -> torch.Tensor:
        """The dense weight (out x in), unpacked: a copy."""
        if self.runs_bitmap is not None:
            return unpack_weight_sparse(self.packed, self.runs_bitmap, self.out_features, self.in_features)
        return unpack_weight(self.packed, self.out_features)

    def lowrank_factors(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        if not self.rank:
            return None
        return unpack_weight(self.lowrank_down, self.rank), unpack_weight(self.lowrank_up, self.out_features)

    def _uses_kernel(self, x: torch.Tensor) -> bool:
        devices = ("cpu",) if self.runs_bitmap is not None else ("cpu", "cuda")
        return x.device.type in devices and x.dtype in VALUE_DTYPES and self.packed.dtype in VALUE_DTYPES

    def _gemm(self, x: torch.Tensor) -> bool:
        """Whether this call goes through torch's dense GEMM: on the CPU, from
        ``gemm_from_tokens`` rows of x on (measured per layer by :func:`tune_prefill_`;
        before that, the fp32 rule of _GEMM_MIN_ROWS_FP32)."""
        limit = self.__dict__.get("gemm_from_tokens", _DEFAULT)
        if limit is _DEFAULT:
            limit = (_GEMM_MIN_ROWS_FP32 if self.packed.dtype == torch.float32 and self.runs_bitmap is None
                     else None)
        rows = x.numel() // max(x.shape[-1], 1)
        return (limit is not None and rows >= limit and x.device.type == "cpu" and x.dtype == self.packed.dtype
                and self.packed.dtype in VALUE_DTYPES)

    def _gemm_weight(self) -> torch.Tensor:
        """W^T for the GEMM: a view of the packed layout, or written densely from the runs."""
        if self.runs_bitmap is None:
            return self.packed[:, : self.out_features]
        return torch.ops.sparsecore.act_unpack_runs(self.packed, self.runs_bitmap, self.runs_offsets,
                                                    self.in_features, self.out_features)

    def _masked_gemm(self, x: torch.Tensor, threshold: float, dense_rows: int = 0) -> torch.Tensor:
        """One GEMM over every row of x; the first ``dense_rows`` of each sequence keep all
        channels (the prefill policy's dense head), the others the thresholded ones."""
        # Scores in fp32, as the kernels compare them (a bf16 comparison would round the
        # threshold to bf16 and flip the channels next to it).
        score = x.abs().float() * self.scale if self.scale is not None else x.abs().float()
        keep = ~(score <= threshold)  # NaN / Inf stay: they reach y instead of vanishing
        if dense_rows:
            keep[..., :dense_rows, :] = True
        y = torch.matmul(x * keep.to(x.dtype), self._gemm_weight())
        if self.bias is not None:
            y = y + self.bias
        if self.rank:
            z = torch.matmul(x * (~keep).to(x.dtype), self.lowrank_down[:, : self.rank])
            y = y + torch.matmul(z, self.lowrank_up[:, : self.out_features])
        return y

    @staticmethod
    def _poison(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The kernels' NaN rule on the torch paths: a row of x with NaN or Inf -> a NaN row of y."""
        bad = ~torch.isfinite(x).all(dim=-1)
        return y.masked_fill(bad.unsqueeze(-1), float("nan"))

    def _sparse(self, x: torch.Tensor) -> torch.Tensor:
        if self._gemm(x):
            return self._poison(self._masked_gemm(x, self.threshold), x)
        if not self._uses_kernel(x):
            y = reference_act_linear(x, self.weight, self.threshold, scale=self.scale, bias=self.bias)
            if self.rank:
                down, up = self.lowrank_factors()
                z = reference_act_linear(x, down, self.threshold, scale=self.scale, complement=True)
                y = y + z @ up.t().to(y.dtype)
            return self._poison(y, x)
        y = act_sparse_linear(x, self.packed, self.out_features, self.threshold, scale=self.scale, bias=self.bias,
                              **self._runs())
        if self.rank:
            z = act_sparse_linear(x, self.lowrank_down, self.rank, self.threshold, scale=self.scale, complement=True)
            y = y + act_sparse_linear(z, self.lowrank_up, self.out_features, -math.inf)
        return y

    def _runs(self) -> dict:
        if self.runs_bitmap is None:
            return {}
        return {"sparse_runs": (self.runs_bitmap, self.runs_offsets), "in_features": self.in_features}

    def _dense(self, x: torch.Tensor) -> torch.Tensor:
        if self._gemm(x):
            y = torch.matmul(x, self._gemm_weight())
            return self._poison(y + self.bias if self.bias is not None else y, x)
        if not self._uses_kernel(x):
            return self._poison(reference_act_linear(x, self.weight, -math.inf, bias=self.bias), x)
        return act_sparse_linear(x, self.packed, self.out_features, -math.inf, bias=self.bias, **self._runs())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.shape[-2] if x.dim() >= 3 else 1
        dense = self.prefill.dense_tokens(tokens)
        if dense == 0:
            return self._sparse(x)
        if dense >= tokens:
            return self._dense(x)
        if self._gemm(x):  # one GEMM over the whole prompt: one weight pass, no concatenation
            return self._poison(self._masked_gemm(x, self.threshold, dense_rows=dense), x)
        return torch.cat([self._dense(x[..., :dense, :]), self._sparse(x[..., dense:, :])], dim=-2)

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        if self.scale is not None and self.scale.dtype != torch.float32:
            self.scale = self.scale.to(torch.float32)  # the kernels read the scale in fp32
        # Weight-sparse runs are a CPU layout. On a GPU the layer keeps the dense packed
        # weight (unpacked once, here) and runs the CUDA kernel; moving back to the CPU
        # packs the runs again. Never a per-forward rebuild.
        if self.runs_bitmap is not None and self.packed.device.type != "cpu":
            dense = unpack_weight_sparse(self.packed.cpu(), self.runs_bitmap.cpu(), self.out_features,
                                         self.in_features)
            self.packed = pack_weight(dense).to(self.packed.device)
            self.runs_bitmap = self.runs_offsets = None
            self._runs_on_cpu = True
        elif getattr(self, "_runs_on_cpu", False) and self.packed.device.type == "cpu":
            values, bitmap, offsets = pack_weight_sparse(unpack_weight(self.packed, self.out_features))
            self.packed, self.runs_bitmap, self.runs_offsets = values, bitmap, offsets
            self._runs_on_cpu = False
        return self

    def extra_repr(self) -> str:
        target = f", target_sparsity={self.target_sparsity:.2f}" if self.target_sparsity is not None else ""
        rank = f", rank={self.rank}" if self.rank else ""
        runs = ", weight_sparse=True" if self.weight_sparse else ""
        return (f"in_features={self.in_features}, out_features={self.out_features}, method={self.method}{runs}, "
                f"threshold={self.threshold:.4g}{target}{rank}, prefill={self.prefill.mode}")

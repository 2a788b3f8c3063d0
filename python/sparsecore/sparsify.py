"""``sparsify_``: prune the ``nn.Linear`` layers of a model in place and run them on sparsecore kernels.

The shape users know from torchao: ``sparsify_(model, config, filter_fn=None)`` with a
config dataclass per pruning pattern and a registry of handlers. Each selected layer is
pruned, converted to :class:`sparsecore.nn.SparseLinear`, timed against its dense
version at the batch size you give, and kept dense (with the pruned weights) when the
sparse kernel would be slower; the returned report says which layer got what.

Examples
--------
>>> import torch, sparsecore
>>> model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))
>>> report = sparsecore.sparsify_(model, sparsecore.MagnitudeConfig(sparsity=0.5))
>>> len(report.layers)
2
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from .nn import SparseLinear
from .pruning import block_mask, magnitude_mask, nm_mask


@dataclass
class _Common:
    format: str = "csr"                 # "csr" or "bsr"
    dtype: torch.dtype | None = None    # stored value dtype (default: the layer's)
    fallback_to_dense: bool = True      # keep a layer dense when sparse is slower
    tune_tokens: int = 1                # batch size the speed comparison uses (1 = decode)


@dataclass
class MagnitudeConfig(_Common):
    """Unstructured magnitude pruning to ``sparsity`` (per output row by default)."""
    sparsity: float = 0.5
    per_row: bool = True


@dataclass
class NMConfig(_Common):
    """N:M pruning along the input dimension (2:4 by default)."""
    n: int = 2
    m: int = 4


@dataclass
class BlockConfig(_Common):
    """Block pruning of ``blocksize`` tiles (scored by the sum of ``|W|``); runs as BSR."""
    sparsity: float = 0.5
    blocksize: tuple[int, int] = (16, 16)
    format: str = "bsr"


@dataclass
class LayerReport:
    name: str
    shape: tuple[int, int]
    sparsity: float
    format: str          # "csr", "bsr" or "dense (fallback)"
    dense_ms: float
    sparse_ms: float


@dataclass
class SparsifyReport:
    layers: list[LayerReport] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"{'layer':<40} {'shape':>13} {'sparsity':>8} {'format':>17} {'dense ms':>9} {'sparse ms':>9}"]
        for r in self.layers:
            lines.append(f"{r.name:<40} {str(r.shape):>13} {r.sparsity:>8.1%} {r.format:>17} "
                         f"{r.dense_ms:>9.3f} {r.sparse_ms:>9.3f}")
        return "\n".join(lines)


def _magnitude(linear: nn.Linear, config: MagnitudeConfig) -> torch.Tensor:
    return magnitude_mask(linear.weight, config.sparsity, per_row=config.per_row)


def _nm(linear: nn.Linear, config: NMConfig) -> torch.Tensor:
    return nm_mask(linear.weight.detach().abs().float(), config.n, config.m)


def _block(linear: nn.Linear, config: BlockConfig) -> torch.Tensor:
    return block_mask(linear.weight.detach().abs().float(), config.blocksize, config.sparsity)


# Registry: config type -> mask function. Later pruning methods register here.
MASK_HANDLERS: dict[type, Callable[[nn.Linear, object], torch.Tensor]] = {
    MagnitudeConfig: _magnitude,
    NMConfig: _nm,
    BlockConfig: _block,
}


def _median_ms(fn, reps: int = 7) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2] * 1e3


def _set_child(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def sparsify_(model: nn.Module, config, filter_fn: Callable[[nn.Module, str], bool] | None = None
              ) -> SparsifyReport:
    """Prune and convert, in place, every ``nn.Linear`` of ``model`` that ``filter_fn(module, name)`` accepts.

    Returns a :class:`SparsifyReport` (one line per layer: sparsity reached, format chosen,
    measured dense and sparse time at ``config.tune_tokens`` tokens).
    """
    handler = MASK_HANDLERS.get(type(config))
    if handler is None:
        raise TypeError(f"unsupported config {type(config).__name__}; expected one of "
                        f"{', '.join(c.__name__ for c in MASK_HANDLERS)}")
    if config.format not in ("csr", "bsr"):
        raise ValueError(f"format must be 'csr' or 'bsr', got {config.format!r}")
    if int(config.tune_tokens) < 1:
        raise ValueError(f"tune_tokens must be >= 1, got {config.tune_tokens}")
    targets = [(name, mod) for name, mod in model.named_modules()
               if isinstance(mod, nn.Linear) and (filter_fn is None or filter_fn(mod, name))]
    report = SparsifyReport()
    blocksize = getattr(config, "blocksize", (16, 16))
    # All masks first: a layer the config cannot handle raises before any layer changes.
    masks = [handler(linear, config) for _, linear in targets]
    for (name, linear), mask in zip(targets, masks):
        with torch.no_grad():
            linear.weight.mul_(mask.to(linear.weight.dtype))
        sparse = SparseLinear.from_linear(linear, mask, format=config.format, blocksize=blocksize, dtype=config.dtype)
        x = torch.randn(int(config.tune_tokens), linear.in_features, dtype=linear.weight.dtype,
                        device=linear.weight.device)
        with torch.no_grad():
            dense_ms = _median_ms(lambda: linear(x))
            sparse_ms = _median_ms(lambda: sparse(x))
        keep_dense = config.fallback_to_dense and sparse_ms > dense_ms
        if not keep_dense:
            _set_child(model, name, sparse)
        report.layers.append(LayerReport(name, tuple(linear.weight.shape), 1.0 - float(mask.float().mean()),
                                         "dense (fallback)" if keep_dense else config.format, dense_ms, sparse_ms))
    return report

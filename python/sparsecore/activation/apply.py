"""Turning a model's linears into :class:`ActSparseLinear` for TEAL, WINA or R-Sparse."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ..models.blocks import protected_linears
from ..nn import SparseLinear
from .calibrate import LayerStats, collect_histograms, greedy_allocation, model_sparsity
from .configs import RSparseConfig, TEALConfig
from .linear import ActSparseLinear, PrefillPolicy, dense_weight
from .rsparse import LayerSVD, evolutionary_search, layer_plan


def activation_targets(model: nn.Module, filter_fn=None) -> dict[str, nn.Linear]:
    """The linears to sparsify: ``filter_fn(module, name)`` picks (it must pick only
    ``nn.Linear`` or pruned ``SparseLinear``); default: every one of those but the output
    embedding and tied weights. A pruned layer keeps its weight sparsity (composition)."""
    kinds = (nn.Linear, SparseLinear)
    if filter_fn is None:
        protected = protected_linears(model)
        chosen = {n: m for n, m in model.named_modules() if isinstance(m, kinds) and n not in protected}
    else:
        chosen = {n: m for n, m in model.named_modules() if n and filter_fn(m, n)}
        bad = [f"{n} ({type(m).__name__})" for n, m in chosen.items() if not isinstance(m, kinds)]
        if bad:
            raise TypeError(f"activation sparsity applies to nn.Linear (or SparseLinear) layers only; "
                            f"filter_fn selected {bad[:3]}")
    if not chosen:
        raise ValueError("no nn.Linear layers selected for activation sparsity")
    return chosen


@dataclass
class ActivationLayerReport:
    name: str
    method: str
    level: float           # sparsity of the layer's inputs on calibration text
    threshold: float
    rank: int = 0
    alpha: float | None = None


@dataclass
class ActivationReport:
    method: str
    target: float
    achieved: float         # parameter-weighted calibration sparsity
    layers: list[ActivationLayerReport] = field(default_factory=list)
    search_history: list[float] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"{self.method}: target {self.target:.0%}, calibrated {self.achieved:.1%} "
                 f"(parameter-weighted) over {len(self.layers)} layers"]
        for r in self.layers:
            extra = f" rank {r.rank} alpha {r.alpha:.2f}" if r.alpha is not None else ""
            lines.append(f"  {r.name}: {r.level:.1%} threshold {r.threshold:.4g}{extra}")
        return "\n".join(lines)


class ActivationCalibration:
    """Histograms of every target's input scores on calibration text, reusable for several
    targets and methods with the same score (``weighted``: WINA and R-Sparse share one)."""

    def __init__(self, model: nn.Module, calibration: list, *, weighted: bool, filter_fn=None,
                 progress: bool = True):
        self.model = model
        self.calibration = list(calibration)
        self.weighted = weighted
        self.progress = progress
        self.stats: dict[str, LayerStats] = collect_histograms(model, self.calibration,
                                                               activation_targets(model, filter_fn), weighted, progress)
        self._svds: dict[str, LayerSVD] | None = None

    def levels(self, targets: list[float], allocation: str = "greedy", step: float = 0.05,
               batches: int = 4) -> dict[float, dict[str, float]]:
        """Per-linear sparsity for each model-wide target (greedy or uniform)."""
        if allocation == "uniform":
            return {t: {n: t for n in self.stats} for t in targets}
        return greedy_allocation(self.model, self.calibration[:batches], self.stats, targets, step, self.progress)

    def build(self, levels: dict[str, float], method: str, prefill: PrefillPolicy,
              target: float) -> tuple[dict[str, ActSparseLinear], ActivationReport]:
        modules, report = {}, ActivationReport(method, target, model_sparsity(levels, self.stats))
        for name, level in levels.items():
            s = self.stats[name]
            t = s.histogram.threshold(level)
            modules[name] = ActSparseLinear.from_linear(s.linear, t, scale=s.scale, prefill=prefill, method=method,
                                                        target_sparsity=level)
            report.layers.append(ActivationLayerReport(name, method, level, t))
        return modules, report

    def rsparse(self, config: RSparseConfig, initial_levels: dict[str, float] | None = None
                ) -> tuple[dict[str, ActSparseLinear], ActivationReport]:
        """R-Sparse for one target; ``initial_levels`` (a per-linear allocation such as
        :meth:`levels`' greedy one) seeds the search, else ``config.seed_allocation`` decides."""
        if not self.weighted:
            raise ValueError("R-Sparse needs the weighted (|x| * ||W[:, j]||) histograms")
        if self._svds is None:
            self._svds = {n: LayerSVD(s.linear) for n, s in self.stats.items()}
        if initial_levels is None and config.seed_allocation == "greedy":
            initial_levels = self.levels([config.sparsity], "greedy", batches=1)[config.sparsity]
        batches = self.calibration[: config.fitness_batches]
        genes, unit_of, history = evolutionary_search(
            self.model, self.stats, self._svds, batches, config.sparsity, generations=config.generations,
            population=config.population, seed=config.seed, max_sparsity=config.max_sparsity,
            initial_levels=initial_levels, progress=config.progress)
        plan = layer_plan(self.stats, self._svds, unit_of, genes)
        achieved = model_sparsity({n: p[4].sparsity for n, p in plan.items()}, self.stats)
        modules, report = {}, ActivationReport("rsparse", config.sparsity, achieved, search_history=history)
        for name, (s, t, down, up, budget) in plan.items():
            dtype = s.linear.bias.dtype if s.linear.bias is not None else dense_weight(s.linear).dtype
            modules[name] = ActSparseLinear.from_linear(
                s.linear, t, scale=s.scale, lowrank=(down.to(dtype), up.to(dtype)) if budget.rank else None,
                prefill=config.prefill, method="rsparse", target_sparsity=budget.sparsity)
            report.layers.append(ActivationLayerReport(name, "rsparse", 1.0 - budget.keep_fraction, t, budget.rank,
                                                       budget.alpha))
        return modules, report


def install(model: nn.Module, modules: dict[str, nn.Module]) -> dict[str, nn.Module]:
    """Put ``modules`` in place of the named submodules; returns the originals (for :func:`restore`)."""
    originals = {}
    for name, module in modules.items():
        parent, _, child = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        originals[name] = getattr(owner, child)
        setattr(owner, child, module)
    return originals


def restore(model: nn.Module, originals: dict[str, nn.Module]) -> None:
    install(model, originals)


def sparsify_activations_(model: nn.Module, config, filter_fn=None) -> ActivationReport:
    """Calibrate, allocate and install activation sparsity (TEAL, WINA or R-Sparse) in place.
    Fused projections (see :func:`sparsecore.fuse_projections_`) become layers of their own
    first: each gets its own threshold, as in an unfused model."""
    config.validate()
    from ..fusion import unfused_unless_failed

    with unfused_unless_failed(model):
        return _sparsify_activations(model, config, filter_fn)


def _sparsify_activations(model: nn.Module, config, filter_fn) -> ActivationReport:
    calib = ActivationCalibration(model, config.calibration, weighted=config.weighted, filter_fn=filter_fn,
                                  progress=config.progress)
    if isinstance(config, RSparseConfig):
        modules, report = calib.rsparse(config)
    elif isinstance(config, TEALConfig):
        target = float(config.sparsity)
        levels = calib.levels([target], config.allocation, config.greedy_step, config.greedy_batches)[target]
        modules, report = calib.build(levels, config.method, config.prefill, target)
    else:
        raise TypeError(f"not an activation-sparsity config: {type(config).__name__}")
    install(model, modules)
    from .tune import tune_prefill_
    tune_prefill_(modules, config.prefill_tokens)
    return report


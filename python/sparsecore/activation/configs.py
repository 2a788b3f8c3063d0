"""``sparsify_`` configs for activation sparsity (torchao style: one dataclass per method)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..kernel_choice import _check_prefill_tokens
from .linear import PrefillPolicy


def _check_sparsity(value: float, what: str = "sparsity") -> None:
    if not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{what} must be a number in [0, 1), got {value!r}")


@dataclass
class TEALConfig:
    """TEAL: drop the inputs with the smallest ``|x|``, per-tensor thresholds from calibrated
    histograms, ``sparsity`` = model-wide parameter-weighted target.

    ``allocation="greedy"``: TEAL's block-wise greedy split across q/k/v, o, gate/up, down
    (steps of ``greedy_step``, block outputs on ``greedy_batches`` calibration batches);
    ``"uniform"``: every layer at ``sparsity``.
    """

    sparsity: float
    calibration: list | None = None
    allocation: str = "greedy"
    greedy_step: float = 0.05
    greedy_batches: int = 4
    prefill: PrefillPolicy = field(default_factory=PrefillPolicy)
    progress: bool = True
    prefill_tokens: int | None = 128   # prompt length up to which the prefill path is measured

    method = "teal"
    weighted = False  # score |x| (TEAL) or |x| * ||W[:, j]|| (WINA, R-Sparse)

    def validate(self) -> None:
        _check_sparsity(self.sparsity)
        if self.allocation not in ("greedy", "uniform"):
            raise ValueError(f"allocation must be 'greedy' or 'uniform', got {self.allocation!r}")
        if not 0.0 < self.greedy_step <= 0.5:
            raise ValueError(f"greedy_step must be in (0, 0.5], got {self.greedy_step}")
        if int(self.greedy_batches) < 1:
            raise ValueError(f"greedy_batches must be >= 1, got {self.greedy_batches}")
        _check_prefill_tokens(self.prefill_tokens)
        if not self.calibration:
            raise ValueError(f"{type(self).__name__} needs calibration= (a list of model inputs on real text)")


@dataclass
class WINAConfig(TEALConfig):
    """WINA: weight-informed selection, score ``|x_j| * ||W[:, j]||_2``; same thresholds and
    allocation machinery as TEAL."""

    method = "wina"
    weighted = True


@dataclass
class RSparseConfig:
    """R-Sparse: exact path for the important channels, rank-r SVD path for the rest; per-layer
    (s, alpha) from an evolutionary search (``generations`` x ``population`` candidates, random
    ``seed``, fitness = loss on ``fitness_batches`` calibration batches). ``seed_allocation``
    "greedy" also starts the search from TEAL's greedy allocation (on the weighted scores)."""

    sparsity: float
    calibration: list | None = None
    generations: int = 6
    population: int = 10
    seed: int = 0
    fitness_batches: int = 2
    max_sparsity: float = 0.9
    seed_allocation: str = "uniform"
    prefill: PrefillPolicy = field(default_factory=PrefillPolicy)
    progress: bool = True
    prefill_tokens: int | None = 128   # prompt length up to which the prefill path is measured

    method = "rsparse"
    weighted = True

    def validate(self) -> None:
        _check_sparsity(self.sparsity)
        _check_sparsity(self.max_sparsity, "max_sparsity")
        if self.sparsity > self.max_sparsity:
            raise ValueError(f"sparsity {self.sparsity} exceeds max_sparsity {self.max_sparsity}")
        if int(self.generations) < 0 or int(self.population) < 4:
            raise ValueError("R-Sparse search needs generations >= 0 and population >= 4")
        if self.seed_allocation not in ("uniform", "greedy"):
            raise ValueError(f"seed_allocation must be 'uniform' or 'greedy', got {self.seed_allocation!r}")
        if int(self.fitness_batches) < 1:
            raise ValueError(f"fitness_batches must be >= 1, got {self.fitness_batches}")
        _check_prefill_tokens(self.prefill_tokens)
        if not self.calibration:
            raise ValueError("RSparseConfig needs calibration= (a list of model inputs on real text)")


ACTIVATION_CONFIGS = (TEALConfig, WINAConfig, RSparseConfig)

"""Attention-sparsity recipes for HF models (applied by :func:`sparsify_attention_`).

Each config turns one attention call (a layer's q, k and the call's length) into the
kernel's arguments: a block mask, a window, BLASST's threshold. Recipes serialise to a
plain dict (``to_dict`` / :func:`config_from_dict`) so a saved model keeps them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .quest import bounds_for, quest_block_mask
from .select import topk_blocks, vertical_slash_blocks


def _positive_int(name: str, value, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class StaticAttentionConfig:
    """A causal sliding window of ``window`` keys plus ``sinks`` attention sinks (StreamingLLM).

    Layers that already have a sliding window of their own (Gemma-3's local layers) keep the
    smaller of the two. ``make_cache()`` gives the KV cache that evicts what no later query
    can see (at most ``sinks + window - 1`` tokens)."""

    window: int = 1024
    sinks: int = 4

    def __post_init__(self):
        _positive_int("window", self.window)
        _positive_int("sinks", self.sinks, 0)

    def plan(self, q, k, layer_idx: int) -> dict:
        return {"window": self.window, "sinks": self.sinks}

    def make_cache(self):
        """The bounded KV cache for generation (:class:`~sparsecore.attention.StreamingCache`)."""
        from .streaming import StreamingCache
        return StreamingCache(self.window, self.sinks)


@dataclass(frozen=True)
class TopKAttentionConfig:
    """Dynamic block-sparse prefill: per q block, the ``keep`` fraction of its causal blocks
    with the best pooled score (``estimator="topk"``), or the blocks MInference's
    vertical-slash lines cross (``estimator="vertical_slash"``, ``keep`` fraction of columns
    and of diagonals each). Calls with fewer than ``min_len`` queries run dense (decode)."""

    keep: float = 0.1
    tau: float | None = None
    block: int = 64
    estimator: str = "topk"
    min_len: int = 1024
    sink_blocks: int = 1
    local_blocks: int = 1

    def __post_init__(self):
        if not 0 < self.keep <= 1:
            raise ValueError(f"keep must be in (0, 1], got {self.keep}")
        if self.tau is not None and not 0 < self.tau <= 1:
            raise ValueError(f"tau must be in (0, 1], got {self.tau}")
        if self.estimator not in ("topk", "vertical_slash"):
            raise ValueError(f"estimator must be 'topk' or 'vertical_slash', got {self.estimator!r}")
        _positive_int("block", self.block, 16)
        if self.block % 16:
            raise ValueError(f"block must be a multiple of 16, got {self.block}")
        _positive_int("min_len", self.min_len)
        _positive_int("sink_blocks", self.sink_blocks, 0)
        _positive_int("local_blocks", self.local_blocks, 0)

    def plan(self, q, k, layer_idx: int) -> dict:
        if q.shape[2] < self.min_len:
            return {}
        if self.estimator == "vertical_slash":
            mask = vertical_slash_blocks(q, k, block=self.block, vertical=self.keep, slash=self.keep,
                                         sink_blocks=self.sink_blocks, local_blocks=self.local_blocks)
        else:
            mask = topk_blocks(q, k, block=self.block, keep=self.keep, tau=self.tau, sink_blocks=self.sink_blocks,
                               local_blocks=self.local_blocks)
        return {"block_mask": mask}


@dataclass(frozen=True)
class BLASSTConfig:
    """BLASST: skip a tile whose scores all fall below the running row max by more than
    ``-log(lambda)``, with ``lambda = a / Lk`` (Yuan et al., 2025).

    The default ``a = 10`` is calibrated on SmolLM2 and held-out Wikipedia
    (``python -m sparsecore.bench attention-quality``): perplexity within 0.1% of dense at
    2k-8k with 31% of the tiles skipped; :func:`~sparsecore.attention.calibrate_blasst`
    calibrates it for another model."""

    a: float = 10.0

    def __post_init__(self):
        if not (isinstance(self.a, (int, float)) and math.isfinite(self.a) and self.a >= 0):
            raise ValueError(f"a must be a finite number >= 0, got {self.a!r}")

    def plan(self, q, k, layer_idx: int) -> dict:
        lk = k.shape[2]
        return {"blasst_lambda": min(1.0, self.a / lk) if lk else 0.0}


@dataclass(frozen=True)
class QuestConfig:
    """Quest sparse decode: each step keeps the pages (``page_size`` keys) with the highest
    bound within ``budget`` keys (an int) or that fraction of the cache (a float < 1). The
    first ``dense_layers`` layers and prefill calls (more than 16 queries) stay dense."""

    page_size: int = 16
    budget: float = 0.125
    dense_layers: int = 2

    def __post_init__(self):
        _positive_int("page_size", self.page_size, 16)
        if self.page_size % 16:
            raise ValueError(f"page_size must be a multiple of 16, got {self.page_size}")
        if isinstance(self.budget, bool) or not isinstance(self.budget, (int, float)) or not self.budget > 0:
            raise ValueError(f"budget must be > 0 (keys, or a fraction < 1), got {self.budget!r}")
        _positive_int("dense_layers", self.dense_layers, 0)

    def make_cache(self):
        """The KV cache that keeps the page bounds up to date (:class:`~sparsecore.attention.QuestCache`)."""
        from .quest import QuestCache
        return QuestCache(page_size=self.page_size)

    def budget_keys(self, kv_len: int) -> int:
        return int(self.budget * kv_len) if self.budget < 1 else int(self.budget)

    def plan(self, q, k, layer_idx: int) -> dict:
        if q.shape[2] > 16 or layer_idx < self.dense_layers:
            return {}
        mask = quest_block_mask(q, k, bounds_for(k, self.page_size), self.budget_keys(k.shape[2]))
        return {} if mask is None else {"block_mask": mask}


ATTENTION_CONFIGS = {c.__name__: c for c in (StaticAttentionConfig, TopKAttentionConfig, BLASSTConfig, QuestConfig)}
AttentionConfig = StaticAttentionConfig | TopKAttentionConfig | BLASSTConfig | QuestConfig


def config_to_dict(config) -> dict:
    return {"kind": type(config).__name__, **dataclasses.asdict(config)}


def config_from_dict(d: dict):
    """The config :func:`config_to_dict` wrote (validated like a new one)."""
    if not isinstance(d, dict) or d.get("kind") not in ATTENTION_CONFIGS:
        raise ValueError(f"not an attention recipe: {d!r}")
    cls = ATTENTION_CONFIGS[d["kind"]]
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - fields - {"kind"}
    if unknown:
        raise ValueError(f"unknown fields in the {d['kind']} recipe: {sorted(unknown)}")
    return cls(**{k: v for k, v in d.items() if k != "kind"})


def merge_plans(plans: list[dict]) -> dict:
    """Combine the kernel arguments of several configs (e.g. a window with BLASST)."""
    out: dict = {}
    for p in plans:
        for key, value in p.items():
            if key in out and key == "window":
                out[key] = min(out[key], value)
            elif key in out and key != "sinks":
                raise ValueError(f"two attention configs both set {key}")
            else:
                out[key] = value
    return out



SPEC_HELP = ("dense | window:W[:SINKS] | topk:KEEP | vslash:KEEP | blasst:A | quest:BUDGET[:PAGE] "
             "(several joined by '+', e.g. window:1024:4+blasst:1)")


def parse_spec(spec: str) -> tuple:
    """Attention configs from a command-line spec (see ``SPEC_HELP``); ``dense`` gives ()."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"empty attention spec; expected {SPEC_HELP}")
    configs = []
    for part in spec.split("+"):
        name, *values = part.strip().split(":")
        try:
            nums = [float(v) for v in values]
        except ValueError:
            raise ValueError(f"attention spec {part!r}: values must be numbers ({SPEC_HELP})") from None
        if any(not math.isfinite(x) for x in nums):
            raise ValueError(f"attention spec {part!r}: values must be finite")

        def ints(expected: int) -> list[int]:
            if len(nums) > expected or any(x != int(x) for x in nums):
                raise ValueError(f"attention spec {part!r}: expected up to {expected} integers")
            return [int(x) for x in nums]

        def one() -> float:
            if len(nums) != 1:
                raise ValueError(f"attention spec {part!r}: expected one value")
            return nums[0]

        if name == "dense" and not nums:
            continue
        if name == "window" and nums:
            configs.append(StaticAttentionConfig(*ints(2)))
        elif name == "topk":
            configs.append(TopKAttentionConfig(keep=one()))
        elif name == "vslash":
            configs.append(TopKAttentionConfig(keep=one(), estimator="vertical_slash"))
        elif name == "blasst":
            configs.append(BLASSTConfig(a=one()))
        elif name == "quest" and nums and len(nums) <= 2:
            budget = nums[0] if nums[0] < 1 else int(nums[0])
            page = int(nums[1]) if len(nums) == 2 else 16
            if len(nums) == 2 and nums[1] != page:
                raise ValueError(f"attention spec {part!r}: the page size must be an integer")
            configs.append(QuestConfig(page_size=page, budget=budget))
        else:
            raise ValueError(f"unknown attention spec {part!r}; expected {SPEC_HELP}")
    return tuple(configs)

"""``sparsify_``: prune the ``nn.Linear`` layers of a model in place and run them on sparsecore kernels.

The shape users know from torchao: ``sparsify_(model, config, filter_fn=None)`` with a
config dataclass per pruning method. Magnitude, N:M and block configs need no data;
:class:`WandaConfig` and :class:`SparseGPTConfig` take calibration batches and prune the
model's blocks in order, as the papers do. Every pruned layer becomes a
:class:`sparsecore.nn.SparseLinear`; then :func:`select_kernels_` times each layer sparse
and dense at the batch size you give, in forward order (so weights come from memory, as
in a real forward pass, not from a warm cache), and turns back to dense (with the pruned
weights) every layer where the sparse kernel is slower. The returned report says which
layer got what.

The output embedding (``lm_head``) and weights tied to other modules are left alone unless
the config says ``lm_head=True`` (or ``filter_fn`` selects them). A pruned layer whose
weight was shared (SmolLM2's head is tied to the input embedding) is untied first: the
embedding keeps the dense weights, ``config.tie_word_embeddings`` becomes False so saving
and loading keep them apart, and the report says so.

Examples
--------
>>> import torch, sparsecore
>>> model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))
>>> report = sparsecore.sparsify_(model, sparsecore.MagnitudeConfig(sparsity=0.5))
>>> len(report.layers)
2
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from torch import nn

from ._dtypes import VALUE_DTYPES
from .models.blocks import find_blocks, protected_linears
from .formats.nm import SUPPORTED_M
from .kernel_choice import SparsifyReport, _check_prefill_tokens, _choose_kernels, _set_child
from .nn import SparseLinear
from .pruning import Pattern, block_mask, magnitude_mask, nm_mask, prune_model_
from .pruning.head import prune_head_calibrated as _prune_head_calibrated
from .pruning.head import shared_weights as _shared_weights, untie_notes, untied_copy as _untied_copy


@dataclass
class _Common:
    format: str = "auto"                # "auto" (fastest measured), "csr", "bsr" or "nm"
    dtype: torch.dtype | None = None    # stored value dtype (default: the layer's)
    fallback_to_dense: bool = True      # keep a layer dense when sparse is slower
    tune_tokens: int = 1                # batch size the speed comparison uses (1 = decode)
    prefill_tokens: int | None = 128    # prompt length up to which prefill is tuned (see select_kernels_)
    lm_head: bool = False               # also prune the output embedding (untied if tied)
    fuse_projections: bool = False      # run layers that read the same input (q/k/v, gate/up) as one


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
class _Calibrated(_Common):
    """``pattern``: "50%" style unstructured (``sparsity`` gives the fraction), "2:4", "4:8" or
    "block16x16". ``calibration``: model inputs (token-id tensors or dicts of keyword
    arguments). ``allocation``: "uniform" or "owl" (outlier-weighted per-block sparsity).
    ``blocks``: the model's block list (found automatically for HF causal LMs)."""
    sparsity: float = 0.5
    pattern: str = "unstructured"
    calibration: Iterable | None = None
    allocation: str = "uniform"
    blocks: list[nn.Module] | None = None
    progress: bool = True

    def pruning_pattern(self) -> Pattern:
        return Pattern.parse(self.pattern, sparsity=self.sparsity)


@dataclass
class WandaConfig(_Calibrated):
    """Wanda: |W| x ||X|| per input channel, compared within each output row (or N:M group)."""


@dataclass
class SparseGPTConfig(_Calibrated):
    """SparseGPT: OBS pruning with the calibration Hessian, lazy batches and dampening."""
    lazy_batch: int = 128
    damp: float = 0.01


def _magnitude(linear: nn.Linear, config: MagnitudeConfig) -> torch.Tensor:
    return magnitude_mask(linear.weight, config.sparsity, per_row=config.per_row)


def _nm(linear: nn.Linear, config: NMConfig) -> torch.Tensor:
    return nm_mask(linear.weight.detach().abs().float(), config.n, config.m)


def _block(linear: nn.Linear, config: BlockConfig) -> torch.Tensor:
    return block_mask(linear.weight.detach().abs().float(), config.blocksize, config.sparsity)


# Registry of data-free configs: config type -> mask function.
MASK_HANDLERS: dict[type, Callable[[nn.Linear, object], torch.Tensor]] = {
    MagnitudeConfig: _magnitude,
    NMConfig: _nm,
    BlockConfig: _block,
}
CALIBRATED_METHODS: dict[type, str] = {WandaConfig: "wanda", SparseGPTConfig: "sparsegpt"}


FORMATS = ("auto", "csr", "bsr", "nm")


def _data_free_pattern(config) -> Pattern:
    if isinstance(config, NMConfig):
        return Pattern(sparsity=1 - config.n / config.m, nm=(config.n, config.m))
    if isinstance(config, BlockConfig):
        return Pattern(sparsity=config.sparsity, block=tuple(config.blocksize))
    return Pattern(sparsity=config.sparsity)


def _format_for(requested: str, pattern: Pattern, in_features: int) -> str:
    """The weight format a pattern is built in: N:M patterns in the N:M kernels (when the
    input dimension divides into groups), blocks as BSR, the rest as CSR. With "auto",
    ``_choose_kernels`` then also times the same nonzeros as CSR and keeps the faster."""
    if requested != "auto":
        if requested == "nm" and pattern.nm is None:
            raise ValueError(f"format 'nm' needs an N:M pattern, got {pattern.describe()}")
        if requested == "bsr" and pattern.block is None:
            raise ValueError(f"format 'bsr' needs a block pattern, got {pattern.describe()}")
        return requested
    if pattern.block is not None:
        return "bsr"
    if (pattern.nm is not None and pattern.nm[1] in SUPPORTED_M and pattern.nm[0] < pattern.nm[1]
            and in_features % pattern.nm[1] == 0):
        return "nm"
    return "csr"


def _output_embedding(model: nn.Module) -> nn.Module | None:
    get_out = getattr(model, "get_output_embeddings", None)
    return get_out() if callable(get_out) else None


def _targets(model: nn.Module, filter_fn, lm_head: bool = False) -> list[tuple[str, nn.Linear]]:
    protected = protected_linears(model) if filter_fn is None else set()
    head = _output_embedding(model) if lm_head else None
    if lm_head and not isinstance(head, nn.Linear):
        raise ValueError(f"lm_head=True but {type(model).__name__} has no nn.Linear output embedding "
                         f"(get_output_embeddings() gave {type(head).__name__})")
    return [(name, mod) for name, mod in model.named_modules()
            if isinstance(mod, nn.Linear) and (mod is head or name not in protected)
            and (filter_fn is None or filter_fn(mod, name))]


def _untie_note(model: nn.Module, untied: set[str], report: SparsifyReport) -> SparsifyReport:
    report.notes.extend(untie_notes(model, untied))
    return report


def _calibrated_masks(model: nn.Module, config: _Calibrated, filter_fn) -> dict[str, torch.Tensor]:
    if config.calibration is None:
        raise ValueError(f"{type(config).__name__} needs calibration= (a list of model inputs)")
    if config.blocks is not None:
        blocks = list(config.blocks)
        ids = {id(m): n for n, m in model.named_modules()}
        if any(id(b) not in ids for b in blocks):
            raise ValueError("config.blocks must be submodules of the model")
        prefixes = [ids[id(b)] for b in blocks]
    else:
        prefix, blocks = find_blocks(model)
        prefixes = [f"{prefix}.{i}" for i in range(len(blocks))]
    allowed = {name for name, _ in _targets(model, filter_fn)}

    def full(b: int, name: str) -> str:
        return f"{prefixes[b]}.{name}" if prefixes[b] else name

    extra = {"lazy_batch": config.lazy_batch, "damp": config.damp} if isinstance(config, SparseGPTConfig) else {}
    masks = prune_model_(model, blocks, config.calibration, method=CALIBRATED_METHODS[type(config)],
                         pattern=config.pruning_pattern(), allocation=config.allocation,
                         select=lambda b, name, _m: full(b, name) in allowed, progress=config.progress, **extra)
    return {full(b, name): mask for (b, name), mask in masks.items()}


def _check_config(config) -> None:
    """Every argument of a pruning config, before anything is computed or changed."""
    if config.format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {config.format!r}")
    if int(config.tune_tokens) < 1:
        raise ValueError(f"tune_tokens must be >= 1, got {config.tune_tokens}")
    _check_prefill_tokens(config.prefill_tokens)
    if config.dtype is not None and config.dtype not in VALUE_DTYPES:
        raise TypeError(f"dtype must be None or one of float32, bfloat16, float16, got {config.dtype}")
    if isinstance(config, (MagnitudeConfig, BlockConfig, _Calibrated)):
        if not 0.0 <= float(config.sparsity) < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {config.sparsity}")
    if isinstance(config, NMConfig):
        n, m = int(config.n), int(config.m)
        if not 0 < n <= m:
            raise ValueError(f"N:M needs 0 < n <= m, got {config.n}:{config.m}")
    if isinstance(config, BlockConfig):
        if len(tuple(config.blocksize)) != 2 or min(int(b) for b in config.blocksize) < 1:
            raise ValueError(f"blocksize must be two positive integers, got {config.blocksize}")
    if isinstance(config, _Calibrated):
        config.pruning_pattern()
        if config.allocation not in ("uniform", "owl"):
            raise ValueError(f"unknown sparsity allocation {config.allocation!r}; choose one of uniform, owl")
        if config.allocation == "owl" and config.pruning_pattern().nm is not None:
            raise ValueError("OWL allocates unstructured or block sparsity per layer; N:M has a fixed ratio")
        if config.calibration is None or (hasattr(config.calibration, "__len__") and len(config.calibration) == 0):
            raise ValueError(f"{type(config).__name__} needs calibration= (a non-empty list of model inputs)")
    pattern = config.pruning_pattern() if isinstance(config, _Calibrated) else _data_free_pattern(config)
    # The format must be able to hold the pattern (checked per layer shape below).
    _format_for(config.format, pattern, pattern.nm[1] if pattern.nm else 1)


def _build_sparse(name: str, linear: nn.Linear, mask: torch.Tensor, config, pattern: Pattern) -> SparseLinear:
    fmt = _format_for(config.format, pattern, linear.in_features)
    try:
        return SparseLinear.from_linear(linear, mask, format=fmt, blocksize=pattern.block or (16, 16),
                                        nm=pattern.nm or (2, 4), dtype=config.dtype)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"layer {name!r} ({linear.out_features}x{linear.in_features}): {exc}") from exc


def sparsify_(model: nn.Module, config, filter_fn: Callable[[nn.Module, str], bool] | None = None
              ) -> SparsifyReport:
    """Prune and convert, in place, every ``nn.Linear`` of ``model`` that ``filter_fn(module, name)``
    accepts (default: all but the output embedding and tied weights; calibrated methods prune
    only inside the model's blocks).

    Returns a :class:`SparsifyReport` (one line per layer: sparsity reached, format chosen,
    measured dense and sparse time at ``config.tune_tokens`` tokens). Activation-sparsity
    configs (:class:`TEALConfig`, :class:`WINAConfig`, :class:`RSparseConfig`) replace the
    linears by :class:`ActSparseLinear` and return an ``ActivationReport``. Attention configs
    (:class:`StaticAttentionConfig`, :class:`TopKAttentionConfig`, :class:`BLASSTConfig`,
    :class:`QuestConfig`, or a tuple of them) switch the model's attention to the sparsecore
    kernel (:func:`sparsecore.attention.sparsify_attention_`) and return the model.

    It finishes or leaves the model as it was: every argument and every layer is checked
    and every sparse layer built before the first weight changes; calibrated methods
    (which update weights block by block) keep a copy of the original weights of the layers
    they prune until they finish, and put them back if anything fails (an exception or a
    KeyboardInterrupt).
    """
    from .activation import ACTIVATION_CONFIGS, sparsify_activations_
    from .attention.configs import ATTENTION_CONFIGS

    if isinstance(config, ACTIVATION_CONFIGS):
        return sparsify_activations_(model, config, filter_fn)
    attention = config if isinstance(config, tuple) else (config,)
    if attention and all(type(c).__name__ in ATTENTION_CONFIGS and isinstance(c, ATTENTION_CONFIGS[type(c).__name__])
                         for c in attention):
        if filter_fn is not None:
            raise ValueError("filter_fn selects linears; attention configs take layers= in sparsify_attention_")
        from .attention import sparsify_attention_
        return sparsify_attention_(model, *attention)
    if type(config) not in MASK_HANDLERS and type(config) not in CALIBRATED_METHODS:
        known = [c.__name__ for c in (*MASK_HANDLERS, *CALIBRATED_METHODS, *ACTIVATION_CONFIGS)]
        raise TypeError(f"unsupported config {type(config).__name__}; expected one of {', '.join(known)}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _check_config(config)
    if isinstance(config, _Calibrated):
        return _sparsify_calibrated(model, config, filter_fn)
    pattern = _data_free_pattern(config)
    handler = MASK_HANDLERS[type(config)]
    targets = _targets(model, filter_fn, config.lm_head)
    untied = _shared_weights(model, targets)
    originals = dict(targets)
    # A shared weight is pruned in a copy: the dense fallback must not prune the other owner.
    targets = [(name, _untied_copy(lin) if name in untied else lin) for name, lin in targets]
    # Masks and sparse layers first, from the untouched weights: a layer the config cannot
    # handle raises here, before any layer changes.
    masks = {name: handler(linear, config) for name, linear in targets}
    built = {name: _build_sparse(name, linear, masks[name], config, pattern) for name, linear in targets}
    fallbacks = dict(targets)
    try:
        for name, sparse in built.items():
            _set_child(model, name, sparse)

        def commit_dense(name, dense):
            with torch.no_grad():  # the fallback keeps the pruned weights, densely
                dense.weight.mul_(masks[name].to(dense.weight.dtype))
            return dense

        report = _choose_kernels(model, list(built.items()), int(config.tune_tokens), config.fallback_to_dense,
                                 lambda name, _sparse: fallbacks[name], commit_dense,
                                 reformat=config.format == "auto", prefill_tokens=config.prefill_tokens,
                                 fuse=config.fuse_projections)
        return _untie_note(model, untied, report)
    except BaseException:
        for name, linear in originals.items():
            _set_child(model, name, linear)
        raise


def _sparsify_calibrated(model: nn.Module, config, filter_fn) -> SparsifyReport:
    pattern = config.pruning_pattern()
    target_list = _targets(model, filter_fn, config.lm_head)
    head = _output_embedding(model) if config.lm_head else None
    head_name = next((n for n, m in target_list if m is head), None)
    untied = _shared_weights(model, target_list) & {head_name}
    targets = {n: m for n, m in target_list if n != head_name}
    # The calibrated methods change weights block by block: keep the originals until done.
    saved = {name: (lin, lin.weight.detach().clone(), None if lin.bias is None else lin.bias.detach().clone())
             for name, lin in targets.items()}
    try:
        masks = _calibrated_masks(model, config, filter_fn)
        built = {name: _build_sparse(name, model.get_submodule(name), mask, config, pattern)
                 for name, mask in masks.items()}
        pruned = {name: saved[name][0] for name in built}
        if head_name is not None:
            # The head's inputs come from the pruned blocks (updated in place above), as a
            # later layer's do in the papers; the head itself is pruned in a copy.
            pruned[head_name], head_mask = _prune_head_calibrated(model, head_name, head, config,
                                                                 sparsegpt=isinstance(config, SparseGPTConfig))
            built[head_name] = _build_sparse(head_name, pruned[head_name], head_mask, config, pattern)
        for name, sparse in built.items():
            _set_child(model, name, sparse)
        report = _choose_kernels(model, list(built.items()), int(config.tune_tokens), config.fallback_to_dense,
                                 lambda name, _sparse: pruned[name], lambda name, dense: dense,
                                 reformat=config.format == "auto", prefill_tokens=config.prefill_tokens,
                                 fuse=config.fuse_projections)
        return _untie_note(model, untied, report)
    except BaseException:
        if head_name is not None:
            _set_child(model, head_name, head)
        with torch.no_grad():
            for name, (lin, weight, bias) in saved.items():
                lin.weight.copy_(weight)
                if bias is not None:
                    lin.bias.copy_(bias)
                _set_child(model, name, lin)
        raise

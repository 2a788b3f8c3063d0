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

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
from torch import nn

from ._dtypes import VALUE_DTYPES
from .models.blocks import find_blocks, protected_linears
from .formats import BSR, CSR, NM
from .formats.nm import SUPPORTED_M
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


@dataclass
class LayerReport:
    name: str
    shape: tuple[int, int]
    sparsity: float
    format: str          # "csr", "bsr", "nm" or "dense (fallback)"
    dense_ms: float
    sparse_ms: float
    dense_from_tokens: int | None = None   # prefill runs the dense GEMM from this many tokens


@dataclass
class SparsifyReport:
    layers: list[LayerReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)   # e.g. weights untied to prune them

    def __str__(self) -> str:
        lines = [f"{'layer':<40} {'shape':>13} {'sparsity':>8} {'format':>17} {'dense ms':>9} {'sparse ms':>9} "
                 f"{'prefill GEMM from':>17}"]
        for r in self.layers:
            lines.append(f"{r.name:<40} {str(r.shape):>13} {r.sparsity:>8.1%} {r.format:>17} "
                         f"{r.dense_ms:>9.3f} {r.sparse_ms:>9.3f} "
                         f"{'-' if r.dense_from_tokens is None else f'{r.dense_from_tokens} tokens':>17}")
        n_sparse = sum(r.format != "dense (fallback)" for r in self.layers)
        lines.append(f"{n_sparse} of {len(self.layers)} layers run sparse; "
                     f"sum of layer times {sum(r.dense_ms for r in self.layers):.3f} ms dense, "
                     f"{sum(min(r.dense_ms, r.sparse_ms) if r.format == 'dense (fallback)' else r.sparse_ms for r in self.layers):.3f} ms as chosen")
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


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


def _set_child(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


# Layers are timed in groups of at least this many bytes of weights (dense), in forward
# order: inside a group each layer's weights are evicted by the others between its calls
# (as in a real forward pass of a model larger than the cache), calls follow each other
# closely (as in a forward pass: the thread pool stays awake), and at most one group of
# dense twins exists at a time (never a dense copy of the whole model).
_GROUP_BYTES = 96 << 20


def _times_in_forward_order(layers: list[nn.Module], inputs: list[torch.Tensor], reps: int = 5) -> list[float]:
    """Median ms per layer, calling the layers one after another like a forward pass; CUDA
    calls are synchronised (kernel launches are asynchronous)."""
    times = [[] for _ in layers]
    with torch.no_grad():
        for rep in range(reps + 1):
            for i, (layer, x) in enumerate(zip(layers, inputs)):
                cuda = x.device.type == "cuda"
                if cuda:
                    torch.cuda.synchronize(x.device)
                t0 = time.perf_counter()
                layer(x)
                if cuda:
                    torch.cuda.synchronize(x.device)
                if rep:  # the first round warms up
                    times[i].append(time.perf_counter() - t0)
    return [sorted(t)[len(t) // 2] * 1e3 for t in times]


def _groups(chosen: list[tuple[str, SparseLinear]]) -> list[list[tuple[str, SparseLinear]]]:
    groups, current, size = [], [], 0
    for name, sparse in chosen:
        current.append((name, sparse))
        size += sparse.out_features * sparse.in_features * sparse.weight.values.element_size()
        if size >= _GROUP_BYTES:
            groups.append(current)
            current, size = [], 0
    if current:
        groups.append(current)
    return groups


def _dense_twin(sparse: SparseLinear) -> nn.Linear:
    dense = nn.Linear(sparse.in_features, sparse.out_features, bias=sparse.bias is not None,
                      dtype=sparse.weight.dtype, device=sparse.weight.device)
    with torch.no_grad():
        dense.weight.copy_(sparse.weight.to_dense())
        if sparse.bias is not None:
            dense.bias.copy_(sparse.bias)
    return dense.requires_grad_(False)


def _other_formats(sparse: SparseLinear) -> list[SparseLinear]:
    """The same stored entries in the other formats that can run them: an N:M or BSR weight
    also as CSR (which beats the N:M kernel at CPU decode on narrow layers, for example;
    which one wins depends on the machine, the shape and the batch, so it is measured)."""
    weight = sparse.weight
    if not isinstance(weight, (NM, BSR)):
        return []
    csr = CSR.from_dense(weight.to_dense(), mask=weight.stored_mask())
    return [SparseLinear(csr, sparse.bias)]


def _fastest(layers: list[list[nn.Module]], inputs: list[torch.Tensor]) -> list[tuple[int, float]]:
    """For each layer's candidates (same function, different kernels), the index and median
    ms of the fastest; round r times the r-th candidate of every layer in forward order."""
    times = [[] for _ in layers]
    for r in range(max(len(c) for c in layers)):
        idx = [i for i, c in enumerate(layers) if len(c) > r]
        for i, ms in zip(idx, _times_in_forward_order([layers[i][r] for i in idx], [inputs[i] for i in idx])):
            times[i].append(ms)
    return [min(enumerate(t), key=lambda it: it[1]) for t in times]


def _densified(layer: SparseLinear) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: torch.nn.functional.linear(x, layer.weight.to_dense(), layer.bias)


def _check_prefill_tokens(prefill_tokens) -> None:
    if prefill_tokens is not None and (isinstance(prefill_tokens, bool) or not isinstance(prefill_tokens, int)
                                       or prefill_tokens < 1):
        raise ValueError(f"prefill_tokens must be None or an int >= 1, got {prefill_tokens!r}")


def _prefill_ladder(prefill_tokens: int) -> list[int]:
    return sorted({t for t in (16, 64, int(prefill_tokens)) if 1 < t <= int(prefill_tokens)})


def _set_prefill_thresholds(layers: list[SparseLinear], prefill_tokens: int | None) -> None:
    """Per layer, the token count from which writing the weight densely and running the dense
    GEMM beats the sparse kernel at every measured point up to ``prefill_tokens`` (16, 64,
    ``prefill_tokens``), as ``layer.dense_from_tokens``; None where the sparse kernel wins at
    ``prefill_tokens`` (it then wins from 1 token up, as the decode choice measured)."""
    for layer in layers:
        layer.dense_from_tokens = None
    if not layers or not prefill_tokens or prefill_tokens < 2:
        return
    ladder = _prefill_ladder(prefill_tokens)
    wins = [[] for _ in layers]
    for t in ladder:
        inputs = [torch.randn(t, m.in_features, dtype=m.weight.dtype, device=m.weight.device) for m in layers]
        sparse_ms = _times_in_forward_order(layers, inputs, reps=3)
        dense_ms = _times_in_forward_order([_densified(m) for m in layers], inputs, reps=3)
        for w, s_ms, d_ms in zip(wins, sparse_ms, dense_ms):
            w.append(d_ms < s_ms)
    for layer, w in zip(layers, wins):
        for t, dense_wins in reversed(list(zip(ladder, w))):
            if not dense_wins:
                break
            layer.dense_from_tokens = t


def _choose_kernels(model: nn.Module, chosen: list[tuple[str, SparseLinear]], tokens: int, fallback: bool,
                    dense_for: Callable[[str, SparseLinear], nn.Linear],
                    commit_dense: Callable[[str, nn.Linear], nn.Linear], reformat: bool = False,
                    prefill_tokens: int | None = None) -> SparsifyReport:
    """Time the layers dense and sparse group by group (see _GROUP_BYTES), with ``reformat``
    also in their other formats (``_other_formats``); keep each layer's fastest sparse form
    and swap in ``commit_dense(name, dense)`` where dense is faster still. Then, for the layers
    kept sparse, the prompt length from which prefill writes the weight densely
    (``_set_prefill_thresholds``)."""
    report = SparsifyReport()
    for group in _groups(chosen):
        kept: list[tuple[SparseLinear, LayerReport]] = []
        dense = [dense_for(name, sparse) for name, sparse in group]
        inputs = [torch.randn(int(tokens), d.in_features, dtype=d.weight.dtype, device=d.weight.device) for d in dense]
        dense_ms = _times_in_forward_order(dense, inputs)
        candidates = [[sparse] + (_other_formats(sparse) if reformat else []) for _, sparse in group]
        for (name, sparse), twin, d_ms, cands, (best, s_ms) in zip(group, dense, dense_ms, candidates,
                                                                    _fastest(candidates, inputs)):
            keep_dense = fallback and s_ms > d_ms
            if keep_dense:
                _set_child(model, name, commit_dense(name, twin))
            elif best:
                _set_child(model, name, cands[best])
            fmt = "dense (fallback)" if keep_dense else type(cands[best].weight).__name__.lower()
            report.layers.append(LayerReport(name, (sparse.out_features, sparse.in_features), 1.0 - sparse.density,
                                             fmt, d_ms, s_ms))
            if not keep_dense:
                kept.append((cands[best], report.layers[-1]))
        del dense, inputs, candidates
        # fallback=False asks for the sparse kernels everywhere: no dense prefill either.
        _set_prefill_thresholds([layer for layer, _ in kept], prefill_tokens if fallback else None)
        for layer, entry in kept:
            entry.dense_from_tokens = layer.dense_from_tokens
    return report


def select_kernels_(model: nn.Module, tokens: int = 1, *, fallback_to_dense: bool = True,
                    names: list[str] | None = None, dense_layers: dict[str, nn.Linear] | None = None,
                    reformat: bool = True, prefill_tokens: int | None = 128) -> SparsifyReport:
    """Time every :class:`SparseLinear` of ``model`` (or those in ``names``) against its dense
    equivalent at ``tokens`` tokens and, with ``fallback_to_dense``, swap in the dense layer
    where it is faster. With ``reformat``, N:M and BSR weights are also timed as CSR (the
    same stored entries) and the faster form is kept. For the layers kept sparse, prefill is
    tuned up to ``prefill_tokens`` (None: not at all): where writing the weight densely and
    running the dense GEMM measures faster from some prompt length on (16, 64 or
    ``prefill_tokens``), calls with that many tokens or more do that
    (``layer.dense_from_tokens``), so prefill is not slower than dense. Returns the report. Use it after :func:`sparsecore.load_sparse` to pick
    kernels for the machine and batch size at hand. ``dense_layers`` (name -> pruned
    ``nn.Linear``) gives the dense versions to compare with and fall back to; by default they
    are rebuilt from the sparse weights, one group of layers (~96 MiB) at a time, never a
    dense copy of the whole model. Layers are timed in forward order within a group, so
    their weights come from memory as in a real forward pass; CUDA calls are synchronised."""
    if int(tokens) < 1:
        raise ValueError(f"tokens must be >= 1, got {tokens}")
    _check_prefill_tokens(prefill_tokens)
    chosen = [(n, m) for n, m in model.named_modules() if isinstance(m, SparseLinear) and (names is None or n in names)]

    def dense_for(name, sparse):
        return dense_layers[name] if dense_layers and name in dense_layers else _dense_twin(sparse)

    return _choose_kernels(model, chosen, int(tokens), fallback_to_dense, dense_for, lambda name, dense: dense,
                           reformat=reformat, prefill_tokens=prefill_tokens)


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
                                 reformat=config.format == "auto", prefill_tokens=config.prefill_tokens)
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
                                 reformat=config.format == "auto", prefill_tokens=config.prefill_tokens)
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

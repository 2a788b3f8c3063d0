"""Choosing each layer's kernel by measurement: dense or sparse, which sparse format, and from
which prompt length prefill runs the dense GEMM. Used by :func:`sparsecore.sparsify_`,
:func:`select_kernels_` and :func:`sparsecore.load_pretrained`; every choice comes from
timings on this machine at this batch size, none from a model's name or shapes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from .formats import BSR, CSR, NM
from .nn import SparseLinear


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


def _call_ms(layer: Callable, x: torch.Tensor) -> float:
    """Milliseconds of one call; CUDA calls are synchronised (launches are asynchronous)."""
    cuda = x.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(x.device)
    t0 = time.perf_counter()
    layer(x)
    if cuda:
        torch.cuda.synchronize(x.device)
    return (time.perf_counter() - t0) * 1e3


def _interleaved_times(variants: list[list[Callable | None]], inputs: list[torch.Tensor],
                       reps: int = 5) -> list[list[float | None]]:
    """``times[v][i]``: median ms of ``variants[v][i]`` (None where layer i has no variant v).
    Each round calls every variant's layers one after another like a forward pass, and the
    variants take turns round by round, so a slow spell of the machine (timings drift by
    tens of percent over seconds on shared machines) lands on all of them alike instead of
    on whichever was timed in that spell."""
    times = [[[] for _ in inputs] for _ in variants]
    with torch.no_grad():
        for rep in range(reps + 1):
            for v, layers in enumerate(variants):
                for i, (layer, x) in enumerate(zip(layers, inputs)):
                    if layer is not None:
                        ms = _call_ms(layer, x)
                        if rep:  # the first round warms up
                            times[v][i].append(ms)
    return [[sorted(t)[len(t) // 2] if t else None for t in per_layer] for per_layer in times]


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
        sparse_ms, dense_ms = _interleaved_times([layers, [_densified(m) for m in layers]], inputs, reps=3)
        for w, s_ms, d_ms in zip(wins, sparse_ms, dense_ms):
            w.append(d_ms < s_ms)
    for layer, w in zip(layers, wins):
        for t, dense_wins in reversed(list(zip(ladder, w))):
            if not dense_wins:
                break
            layer.dense_from_tokens = t


def _fused_first(model: nn.Module, chosen: list[tuple[str, SparseLinear]], dense_for, commit_dense):
    """Fuse the chosen layers that read the same input (:func:`sparsecore.fuse_projections_`);
    the list with each group's stacked layer in its first member's place, and dense_for /
    commit_dense that build a stacked layer's dense twin from its stored entries."""
    from .fusion import _fuse

    stacked = {}
    for members, group in _fuse(model, names={n for n, _ in chosen}):
        stacked[members[0]] = (f"{members[0]}.group.fused", group.fused)
        stacked.update({m: None for m in members[1:]})
    if not stacked:
        return chosen, dense_for, commit_dense
    fused_names = {v[0] for v in stacked.values() if v is not None}
    chosen = [stacked[n] if n in stacked else (n, m) for n, m in chosen if stacked.get(n, ()) is not None]
    return (chosen, lambda name, sparse: _dense_twin(sparse) if name in fused_names else dense_for(name, sparse),
            lambda name, dense: dense if name in fused_names else commit_dense(name, dense))


def _choose_kernels(model: nn.Module, chosen: list[tuple[str, SparseLinear]], tokens: int, fallback: bool,
                    dense_for: Callable[[str, SparseLinear], nn.Linear],
                    commit_dense: Callable[[str, nn.Linear], nn.Linear], reformat: bool = False,
                    prefill_tokens: int | None = None, fuse: bool = False) -> SparsifyReport:
    """With ``fuse``, first fuse the layers that read the same input (``_fused_first``) so
    that each group is judged as one stacked layer. Time the layers dense and sparse group
    by group (see _GROUP_BYTES), with ``reformat`` also in their other formats
    (``_other_formats``); keep each layer's fastest sparse form and swap in
    ``commit_dense(name, dense)`` where dense is faster still. Then, for the layers kept
    sparse, the prompt length from which prefill writes the weight densely
    (``_set_prefill_thresholds``). Stacked layers appear in the report under their
    members' names (``<parent>.q_proj+k_proj+v_proj``)."""
    from .fusion import fused_layer_label

    if fuse:
        chosen, dense_for, commit_dense = _fused_first(model, chosen, dense_for, commit_dense)
    report = SparsifyReport()
    for group in _groups(chosen):
        kept: list[tuple[SparseLinear, LayerReport]] = []
        dense = [dense_for(name, sparse) for name, sparse in group]
        inputs = [torch.randn(int(tokens), d.in_features, dtype=d.weight.dtype, device=d.weight.device) for d in dense]
        candidates = [[sparse] + (_other_formats(sparse) if reformat else []) for _, sparse in group]
        # Variant 0 is dense; variant r + 1 is every layer's r-th sparse candidate.
        rounds = max(len(c) for c in candidates)
        variants = [dense] + [[c[r] if r < len(c) else None for c in candidates] for r in range(rounds)]
        times = _interleaved_times(variants, inputs)
        dense_ms = times[0]
        fastest = [min(((r, times[r + 1][i]) for r in range(len(c))), key=lambda it: it[1])
                   for i, c in enumerate(candidates)]
        for (name, sparse), twin, d_ms, cands, (best, s_ms) in zip(group, dense, dense_ms, candidates, fastest):
            keep_dense = fallback and s_ms > d_ms
            if keep_dense:
                _set_child(model, name, commit_dense(name, twin))
            elif best:
                _set_child(model, name, cands[best])
            fmt = "dense (fallback)" if keep_dense else type(cands[best].weight).__name__.lower()
            report.layers.append(LayerReport(fused_layer_label(model, name), (sparse.out_features, sparse.in_features),
                                             1.0 - sparse.density, fmt, d_ms, s_ms))
            if not keep_dense:
                kept.append((cands[best], report.layers[-1]))
        del dense, inputs, candidates, variants
        # fallback=False asks for the sparse kernels everywhere: no dense prefill either.
        _set_prefill_thresholds([layer for layer, _ in kept], prefill_tokens if fallback else None)
        for layer, entry in kept:
            entry.dense_from_tokens = layer.dense_from_tokens
    return report


def select_kernels_(model: nn.Module, tokens: int = 1, *, fallback_to_dense: bool = True,
                    names: list[str] | None = None, dense_layers: dict[str, nn.Linear] | None = None,
                    reformat: bool = True, prefill_tokens: int | None = 128,
                    fuse_projections: bool = False) -> SparsifyReport:
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
    their weights come from memory as in a real forward pass; CUDA calls are synchronised.
    With ``fuse_projections``, layers that read the same input (q/k/v, gate/up) are first
    fused (:func:`sparsecore.fuse_projections_`: one forward pass on a few tokens
    finds them) and each set is timed and chosen as one stacked layer; its dense twin is
    built from the stored entries (``dense_layers`` is not used for it)."""
    if int(tokens) < 1:
        raise ValueError(f"tokens must be >= 1, got {tokens}")
    _check_prefill_tokens(prefill_tokens)
    chosen = [(n, m) for n, m in model.named_modules() if isinstance(m, SparseLinear) and (names is None or n in names)]

    def dense_for(name, sparse):
        return dense_layers[name] if dense_layers and name in dense_layers else _dense_twin(sparse)

    return _choose_kernels(model, chosen, int(tokens), fallback_to_dense, dense_for, lambda name, dense: dense,
                           reformat=reformat, prefill_tokens=prefill_tokens, fuse=fuse_projections)

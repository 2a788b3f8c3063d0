"""Finding the sparse projections of a model that read the same input and running each set as
one layer (see :mod:`sparsecore.nn.fused_projection`). The sets are found by running the
model once on a few tokens and recording which tensor object each layer received: no layer
names or shapes of any model family are assumed."""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from .kernel_choice import _set_child
from .nn import ProjectionGroup, ProjectionSlice, SparseLinear
from .nn.fused_projection import same_format, stored_mask


def _example_inputs(model: nn.Module, example_inputs):
    if example_inputs is not None:
        return example_inputs
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    if not isinstance(vocab, int) or vocab < 1:
        return None
    device = next((t.device for t in model.buffers()), None) or next((p.device for p in model.parameters()), None)
    return {"input_ids": (torch.arange(4, device=device) % vocab).unsqueeze(0)}


def shared_input_groups(model: nn.Module, example_inputs=None, names=None) -> list[list[str]]:
    """Sets (in call order) of :class:`SparseLinear` siblings that one forward pass on
    ``example_inputs`` (default: 4 token ids for a model with ``config.vocab_size``) called
    once each with the same input tensor, the same dtype and the same width."""
    example = _example_inputs(model, example_inputs)
    if example is None:
        return []
    layers = {n: m for n, m in model.named_modules() if isinstance(m, SparseLinear) and (names is None or n in names)}
    calls: list[tuple[str, torch.Tensor]] = []
    hooks = [m.register_forward_pre_hook(lambda _m, args, n=n: calls.append((n, args[0] if args else None)))
             for n, m in layers.items()]
    try:
        with torch.no_grad():
            model(**example) if isinstance(example, dict) else model(example)
    finally:
        for h in hooks:
            h.remove()
    counts: dict[str, int] = {}
    for n, _ in calls:
        counts[n] = counts.get(n, 0) + 1
    by_input: dict[tuple[str, int], list[str]] = {}
    for n, x in calls:  # `calls` holds every input alive, so no two share an id()
        if counts[n] == 1 and isinstance(x, torch.Tensor):
            by_input.setdefault((n.rpartition(".")[0], id(x)), []).append(n)
    groups = []
    for members in by_input.values():
        first = layers[members[0]]
        if len(members) > 1 and all(layers[n].in_features == first.in_features and
                                    layers[n].weight.dtype == first.weight.dtype and
                                    layers[n].weight.device == first.weight.device for n in members):
            groups.append(members)
    return groups


def _stacked(members: list[SparseLinear]) -> SparseLinear:
    weights = [m.weight for m in members]
    first = weights[0]
    uniform = all(type(w) is type(first) and getattr(w, "blocksize", None) == getattr(first, "blocksize", None)
                  and getattr(w, "n", None) == getattr(first, "n", None) for w in weights)
    dense = torch.cat([w.to_dense() for w in weights])
    mask = torch.cat([stored_mask(w) for w in weights])
    bias = None
    if any(m.bias is not None for m in members):
        bias = torch.cat([m.bias.detach() if m.bias is not None else torch.zeros(m.out_features, dtype=dense.dtype,
                                                                                  device=dense.device)
                          for m in members])
    return SparseLinear(same_format(dense, mask, first if uniform else None), bias)


def fuse_projections_(model: nn.Module, example_inputs=None, names=None) -> list[ProjectionGroup]:
    """Replace, in place, every set of :func:`shared_input_groups` by one stacked layer
    (:class:`~sparsecore.nn.ProjectionGroup`) and its members by slices of it. The stacked
    weight keeps the members' format when they share one (CSR otherwise) and exactly their
    entries, so outputs are unchanged. Returns the groups made. Every group is built before
    the model changes. :func:`sparsecore.select_kernels_` and :func:`sparsecore.sparsify_`
    with ``fuse_projections=True`` fuse and then time the stacked layers against dense."""
    return [group for _, group in _fuse(model, example_inputs, names)]


def _fuse(model: nn.Module, example_inputs=None, names=None) -> list[tuple[list[str], ProjectionGroup]]:
    """fuse_projections_, returning each group with its members' names."""
    built = []
    for members in shared_input_groups(model, example_inputs, names):
        layers = [model.get_submodule(n) for n in members]
        group = ProjectionGroup(_stacked(layers), [n.rpartition(".")[2] for n in members],
                                [m.out_features for m in layers])
        built.append((members, group))
    for members, group in built:
        for i, n in enumerate(members):
            _set_child(model, n, ProjectionSlice(group, i, owner=i == 0))
    return built


def fused_layer_label(model: nn.Module, name: str) -> str:
    """``name`` of a fused group's stacked layer (``<parent>.q_proj.group.fused``) as its
    members (``<parent>.q_proj+k_proj+v_proj``); other names unchanged."""
    owner, _, tail = name.rpartition(".group.")
    if tail != "fused" or not isinstance(model.get_submodule(owner), ProjectionSlice):
        return name
    parent = owner.rpartition(".")[0]
    members = "+".join(model.get_submodule(owner).group.names)
    return f"{parent}.{members}" if parent else members


def _unfuse(model: nn.Module) -> list[tuple[str, ProjectionSlice]]:
    """Put every fused member back as a layer of its own; returns the slices it replaced."""
    slices = [(n, m) for n, m in model.named_modules() if isinstance(m, ProjectionSlice)]
    members = {n: s.group.member(s.index) for n, s in slices}  # all built before any change
    for n, layer in members.items():
        _set_child(model, n, layer)
    return slices


def unfuse_projections_(model: nn.Module) -> int:
    """Give every fused member its own layer again (the same entries, in the stacked
    layer's format: sparse, or dense where the kernel choice fell back to dense). Returns
    the number of layers restored."""
    return len(_unfuse(model))


@contextmanager
def unfused_unless_failed(model: nn.Module):
    """For changes that work on single layers (activation sparsity): the fused members are
    layers of their own from here on, or fused again if the body raises."""
    slices = _unfuse(model)
    try:
        yield model
    except BaseException:
        for n, s in slices:
            _set_child(model, n, s)
        raise


@contextmanager
def unfused(model: nn.Module):
    """The model with its fused members as layers of their own for the duration (saving,
    exporting); the fused layers are back afterwards, also if the body raises."""
    slices = _unfuse(model)
    try:
        yield model
    finally:
        for n, s in slices:
            _set_child(model, n, s)

"""The output embedding (``lm_head``) and weights tied to other modules: finding shared
weights, pruning them in an untied copy, and recording the untying; plus the calibrated
pruning of the head on its own inputs (the hidden states after the pruned blocks)."""

from __future__ import annotations

import torch
from torch import nn

from .calibration import InputStats, capture_block_inputs


def shared_weights(model: nn.Module, targets: list[tuple[str, nn.Linear]]) -> set[str]:
    """Targets whose weight another module also holds (a head tied to the input embedding)."""
    owners: dict[int, int] = {}
    for mod in model.modules():
        for p in mod.parameters(recurse=False):
            owners[id(p)] = owners.get(id(p), 0) + 1
    return {name for name, lin in targets if owners.get(id(lin.weight), 0) > 1}


def untied_copy(linear: nn.Linear) -> nn.Linear:
    """A linear with its own copy of ``linear``'s weight and bias (pruning it leaves the original alone)."""
    w = linear.weight
    copy = nn.Linear(linear.in_features, linear.out_features, bias=linear.bias is not None, device=w.device,
                     dtype=w.dtype)
    with torch.no_grad():
        copy.weight.copy_(w)
        if linear.bias is not None:
            copy.bias.copy_(linear.bias)
    return copy


def untie_notes(model: nn.Module, untied: set[str]) -> list[str]:
    """Record the untying in the model's config (so saving keeps the weights apart); the report's notes."""
    if not untied:
        return []
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "tie_word_embeddings", False):
        config.tie_word_embeddings = False
    return [f"{name} was tied to another module's weight (the input embedding); it was untied to be pruned: "
            f"the other module keeps the dense weight, the model holds both" for name in sorted(untied)]


def prune_head_calibrated(model: nn.Module, name: str, head: nn.Linear, config, *, sparsegpt: bool
                          ) -> tuple[nn.Linear, torch.Tensor]:
    """The output embedding pruned with the config's method (SparseGPT or Wanda) on its own
    inputs through the (already pruned) model: (pruned copy, mask)."""
    from .prune import _wanda_layer
    from .sparsegpt import HessianStats, sparsegpt_prune_weight

    pattern = config.pruning_pattern()
    pattern.check(name, tuple(head.weight.shape))
    stats = HessianStats(head.in_features) if sparsegpt else InputStats(head.in_features)
    # The capture stops each pass at the head: the logits are never computed.
    for args, _kwargs in capture_block_inputs(model, head, config.calibration):
        stats.update(args[0])
    copy = untied_copy(head)
    if sparsegpt:
        weight, mask = sparsegpt_prune_weight(copy.weight, stats.hessian, pattern, lazy_batch=config.lazy_batch,
                                              damp=config.damp)
    else:
        weight, mask = _wanda_layer(pattern)(0, name, copy, stats)
    with torch.no_grad():
        copy.weight.copy_(weight)
    return copy, mask

"""Where the prunable layers of a model are: its repeated blocks, and the layers not to touch.

Calibrated pruning walks a model block by block (HF decoder layers). Architectures keep
that list under different names; the known ones are tried first, then the largest
``nn.ModuleList`` whose entries hold ``nn.Linear`` layers.
"""

from __future__ import annotations

from torch import nn

# (attribute path) of the decoder-layer list in common HF causal LMs.
KNOWN_BLOCK_PATHS = ("model.layers", "model.decoder.layers", "transformer.h", "gpt_neox.layers",
                     "transformer.blocks", "model.language_model.layers")


def _has_linear(module: nn.Module) -> bool:
    """Whether ``module`` holds linear layers: dense, pruned (SparseLinear) or activation-sparse."""
    from ..activation.linear import ActSparseLinear
    from ..nn import SparseLinear

    return any(isinstance(m, (nn.Linear, SparseLinear, ActSparseLinear)) for m in module.modules())


def find_blocks(model: nn.Module) -> tuple[str, list[nn.Module]]:
    """``(prefix, blocks)``: the model's repeated blocks in forward order and their module path."""
    for path in KNOWN_BLOCK_PATHS:
        try:
            blocks = model.get_submodule(path)
        except AttributeError:
            continue
        if isinstance(blocks, nn.ModuleList) and len(blocks) and all(_has_linear(b) for b in blocks):
            return path, list(blocks)
    candidates = [(name, mod) for name, mod in model.named_modules()
                  if isinstance(mod, nn.ModuleList) and len(mod) and all(_has_linear(b) for b in mod)]
    if candidates:
        name, mod = max(candidates, key=lambda c: sum(p.numel() for p in c[1].parameters()))
        return name, list(mod)
    kinds = sorted({type(m).__name__ for m in model.modules() if m is not model})[:8]
    raise ValueError(f"cannot find the repeated blocks of {type(model).__name__} (no nn.ModuleList of blocks with "
                     f"nn.Linear layers; it has {', '.join(kinds) or 'no submodules'}). Layer types other than "
                     f"nn.Linear (e.g. GPT-2's Conv1D) are not supported; pass blocks= explicitly if the model "
                     f"keeps its blocks elsewhere.")


def protected_linears(model: nn.Module) -> set[str]:
    """Names of linears that pruning leaves alone by default: the output embedding (lm_head) and
    any linear whose weight is shared with another module (tied embeddings): pruning it would
    also prune the input embedding."""
    owners: dict[int, list[str]] = {}
    for name, mod in model.named_modules():
        for _, p in mod.named_parameters(recurse=False):
            owners.setdefault(id(p), []).append(name)
    protected = set()
    get_out = getattr(model, "get_output_embeddings", None)
    out = get_out() if callable(get_out) else None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            if mod is out or len(owners.get(id(mod.weight), [])) > 1:
                protected.add(name)
    return protected

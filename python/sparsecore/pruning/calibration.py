"""Layer-wise calibration as Wanda and SparseGPT do it: capture the inputs of the first block,
then for each block in order collect statistics of its linear layers' inputs, prune the block,
and feed the *pruned* block's outputs to the next block. One block's activations live in
memory at a time.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterable

import torch
from torch import nn


class _Captured(Exception):
    """Raised by the capture hook to stop the forward pass once the first block's inputs are known."""


def capture_block_inputs(model: nn.Module, first_block: nn.Module, batches: Iterable) -> list[tuple[tuple, dict]]:
    """Run ``model(batch)`` for every batch and record the (args, kwargs) its ``first_block`` receives.

    ``batch`` may be a tensor (passed positionally) or a dict (passed as keyword arguments).
    """
    captured: list[tuple[tuple, dict]] = []

    def hook(_module, args, kwargs):
        captured.append((tuple(args), dict(kwargs)))
        raise _Captured

    handle = first_block.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            for batch in batches:
                # The hook stops the pass at the first block: nothing after it runs.
                with contextlib.suppress(_Captured):
                    model(**batch) if isinstance(batch, dict) else model(batch)
    finally:
        handle.remove()
    if not captured:
        raise ValueError("no calibration batch reached the first block")
    return captured


class InputStats:
    """Running sum of squares of a linear layer's inputs per input channel (float64)."""

    def __init__(self, in_features: int):
        self.sq_sum = torch.zeros(in_features, dtype=torch.float64)
        self.tokens = 0

    def update(self, x: torch.Tensor) -> None:
        x2 = x.detach().reshape(-1, x.shape[-1]).to(torch.float64)
        self.sq_sum += (x2 * x2).sum(dim=0).cpu()
        self.tokens += x2.shape[0]

    @property
    def norms(self) -> torch.Tensor:
        """||X_j||_2 over all calibration tokens, per input channel."""
        return self.sq_sum.sqrt()


def _with_hidden(args: tuple, kwargs: dict, hidden: torch.Tensor) -> tuple[tuple, dict]:
    """Replace a block's hidden-state input: the first positional argument, or the
    ``hidden_states`` keyword (how HF decoder layers are called)."""
    if args:
        return (hidden,) + tuple(args[1:]), kwargs
    if "hidden_states" in kwargs:
        return args, {**kwargs, "hidden_states": hidden}
    raise ValueError("cannot find the block's hidden-state input (no positional argument, no hidden_states=)")


def _block_output(out):
    return out[0] if isinstance(out, (tuple, list)) else out


class _SharedFeed:
    """Feeds each linear's inputs to its stats, once per distinct input tensor: linears that
    read the very same tensor in a forward call (q/k/v, gate/up) share one stats object, so
    SparseGPT's X^T X is accumulated once for them, not three times (same numbers, less work).
    The sharing seen in the first call must hold in every call; anything else raises."""

    def __init__(self, stats: dict[str, object]):
        self.stats = stats
        self.owner: dict[str, str] = {}          # linear -> linear whose stats it shares
        self.call: dict[int, tuple[str, torch.Tensor]] = {}
        self.seen_in_call: dict[str, str] = {}

    def __call__(self, name: str, x: torch.Tensor) -> None:
        first = self.call.get(id(x))
        owner = first[0] if first is not None and first[1] is x else name
        self.seen_in_call[name] = owner
        if owner == name:
            self.call[id(x)] = (name, x)
            self.stats[name].update(x)

    def end_call(self) -> None:
        # Linears not called (MoE experts a batch did not route to) are simply absent.
        for name, owner in self.seen_in_call.items():
            if self.owner.setdefault(name, owner) != owner:
                raise RuntimeError(f"calibration: {name!r} shared its input with {owner!r} in one forward call "
                                   f"but not in another; cannot pool their statistics")
        self.call.clear()
        self.seen_in_call = {}

    def resolved(self) -> dict[str, object]:
        return {name: self.stats[self.owner.get(name, name)] for name in self.stats}


def walk_blocks(blocks: list[nn.Module], inputs: list[tuple[tuple, dict]], make_stats: Callable[[nn.Linear], object],
                visit: Callable[[int, dict[str, nn.Linear], dict[str, object]], None],
                select: Callable[[int, str, nn.Linear], bool] | None = None,
                progress: bool = True, desc: str = "blocks") -> None:
    """Run the calibration inputs through ``blocks`` in order, one block at a time.

    For block ``b``: every selected linear gets ``stats = make_stats(linear)`` fed its inputs
    (``stats.update(x)``), then ``visit(b, linears, stats)`` runs (it may change the block's
    weights), and the block's outputs *after* ``visit`` become the next block's inputs.
    """
    from tqdm.auto import tqdm

    for b, block in enumerate(tqdm(blocks, desc=desc, disable=not progress)):
        linears = {name: mod for name, mod in block.named_modules()
                   if isinstance(mod, nn.Linear) and (select is None or select(b, name, mod))}
        stats = {name: make_stats(mod) for name, mod in linears.items()}
        feed = _SharedFeed(stats)
        handles = [mod.register_forward_pre_hook(lambda _m, args, name=name: feed(name, args[0]))
                   for name, mod in linears.items()]
        try:
            with torch.no_grad():
                for args, kwargs in inputs:
                    block(*args, **kwargs)
                    feed.end_call()
        finally:
            for h in handles:
                h.remove()
        visit(b, linears, feed.resolved())
        with torch.no_grad():
            inputs = [_with_hidden(args, kwargs, _block_output(block(*args, **kwargs))) for args, kwargs in inputs]


def prune_blockwise(blocks: list[nn.Module], inputs: list[tuple[tuple, dict]],
                    make_stats: Callable[[nn.Linear], object],
                    prune_layer: Callable[[int, str, nn.Linear, object], tuple[torch.Tensor, torch.Tensor]],
                    select: Callable[[int, str, nn.Linear], bool] | None = None,
                    progress: bool = True) -> dict[tuple[int, str], torch.Tensor]:
    """Prune ``blocks`` in order; returns the keep-mask of every pruned linear, keyed ``(block, name)``.

    ``prune_layer(b, name, linear, stats)`` returns ``(new_weight, keep_mask)`` from the
    statistics of the linear's inputs on the current (already pruned upstream) activations.
    """
    masks: dict[tuple[int, str], torch.Tensor] = {}

    def visit(b: int, linears: dict[str, nn.Linear], stats: dict[str, object]) -> None:
        # Every layer of the block first, so a failing layer leaves the block unchanged.
        results = {name: prune_layer(b, name, mod, stats[name]) for name, mod in linears.items()}
        with torch.no_grad():
            for name, mod in linears.items():
                weight, mask = results[name]
                mod.weight.copy_(weight.to(mod.weight.dtype))
                masks[(b, name)] = mask

    walk_blocks(blocks, inputs, make_stats, visit, select, progress, desc="pruning blocks")
    return masks

"""Projections that read the same input (q/k/v, gate/up) run as one layer.

A decoder calls ``q_proj(h)``, ``k_proj(h)`` and ``v_proj(h)`` one after another on the same
``h``. :class:`ProjectionGroup` holds one layer with the members' rows stacked (a
:class:`SparseLinear`, or the dense ``nn.Linear`` the kernel choice fell back to); each
member's place in the model holds a :class:`ProjectionSlice`. The first member called with
an input runs the stacked layer once; the others, called with the same tensor object
(unchanged since), take their rows of that output. A member called with any other input
runs the stacked layer itself, so the result never depends on the call order.

The model's ``state_dict()`` is the unfused one (each slice writes its member's keys), so
``save_pretrained`` and ``sparsecore.save_sparse`` files load into a plain model; loading a
state dict *into* a fused model is refused (unfuse it first).
"""

from __future__ import annotations

import threading

import torch
from torch import nn

from ..formats import BSR, CSR, NM
from .sparse_linear import SparseLinear


def stored_mask(weight: CSR | BSR | NM) -> torch.Tensor:
    """The (rows, cols) bool mask of the positions a sparse weight stores."""
    if isinstance(weight, (NM, BSR)):
        return weight.stored_mask()
    rows, cols = weight.shape
    row_ptr = weight.row_ptr.to(torch.int64)
    row_of = torch.repeat_interleave(torch.arange(rows, device=row_ptr.device), row_ptr[1:] - row_ptr[:-1])
    col = weight.col_idx.to(torch.int64) & 0xFFFF if weight.col_idx.dtype == torch.int16 else weight.col_idx.to(torch.int64)
    mask = torch.zeros(rows, cols, dtype=torch.bool, device=row_ptr.device)
    mask[row_of, col] = True
    return mask


def same_format(dense: torch.Tensor, mask: torch.Tensor, like: CSR | BSR | NM | None) -> CSR | BSR | NM:
    """``dense`` where ``mask`` holds, in the format of ``like`` (its N:M pattern or block; CSR for None)."""
    if isinstance(like, NM):
        return NM.from_dense(dense, like.n, like.m, mask=mask)
    if isinstance(like, BSR):
        bh, bw = like.blocksize
        rows, cols = dense.shape
        return BSR.from_dense(dense, (bh, bw), block_mask=mask.reshape(rows // bh, bh, cols // bw, bw).any(3).any(1))
    return CSR.from_dense(dense, mask=mask)


class ProjectionGroup(nn.Module):
    """One layer computing several projections of the same input; rows ``bounds[i]`` of its
    output are member ``i``'s output."""

    def __init__(self, fused: nn.Module, names: list[str], sizes: list[int]):
        super().__init__()
        self.fused = fused
        self.names = list(names)
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        self.bounds = [(s, s + n) for s, n in zip(starts, sizes)]
        # Per thread: [input, its version counter, stacked output, members that took theirs].
        self._pending: dict[int, list] = {}

    @property
    def in_features(self) -> int:
        return self.fused.in_features

    def output(self, index: int, x: torch.Tensor) -> torch.Tensor:
        lo, hi = self.bounds[index]
        if torch.compiler.is_compiling():
            # A graph has no per-thread state: each member runs the stacked layer (correct,
            # but the compiled model gains nothing from fusion; compile an unfused one).
            return self.fused(x)[..., lo:hi].contiguous()
        key = threading.get_ident()
        entry = self._pending.get(key)
        if entry is None or entry[0] is not x or entry[1] != x._version or index in entry[3]:
            entry = [x, x._version, self.fused(x), set()]
            self._pending[key] = entry
        entry[3].add(index)
        if len(entry[3]) == len(self.bounds):
            del self._pending[key]  # every member has its rows: hold on to nothing
        # A copy, not a view: the members' callers may reshape or write their outputs.
        return entry[2][..., lo:hi].contiguous()

    def member(self, index: int) -> nn.Module:
        """Member ``index`` as a layer of its own (new tensors: for saving or unfusing)."""
        lo, hi = self.bounds[index]
        fused = self.fused
        bias = None if fused.bias is None else fused.bias.detach()[lo:hi].clone()
        if isinstance(fused, SparseLinear):
            w = fused.weight
            return SparseLinear(same_format(w.to_dense()[lo:hi], stored_mask(w)[lo:hi], w), bias)
        weight = fused.weight.detach()[lo:hi].clone()
        lin = nn.Linear(weight.shape[1], hi - lo, bias=bias is not None, dtype=weight.dtype, device=weight.device)
        with torch.no_grad():
            lin.weight.copy_(weight)
            if bias is not None:
                lin.bias.copy_(bias)
        return lin.requires_grad_(False)

    def _apply(self, fn, recurse: bool = True):
        self._pending.clear()  # a pending output in the old dtype or device must not be served
        return super()._apply(fn, recurse)

    def __getstate__(self):  # pickling and copy.deepcopy: nothing pending is copied
        state = dict(super().__getstate__())
        state["_pending"] = {}
        return state

    def extra_repr(self) -> str:
        return f"members={'+'.join(self.names)}"


class ProjectionSlice(nn.Module):
    """Member ``index`` of a :class:`ProjectionGroup`, in the member's place in the model.
    The first member's slice owns the group as a submodule (so ``.to()``, ``named_modules``
    and the kernel choice see the stacked layer once); the others refer to it."""

    def __init__(self, group: ProjectionGroup, index: int, owner: bool):
        super().__init__()
        if owner:
            self.group = group
        else:
            self.__dict__["group"] = group  # not a submodule: counted once, under the owner
        self.index = index
        lo, hi = group.bounds[index]
        self.in_features, self.out_features = group.in_features, hi - lo

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.group.output(self.index, x)

    def state_dict(self, *args, destination=None, prefix: str = "", keep_vars: bool = False):
        # The unfused member's keys, so checkpoints of a fused model load into a plain one.
        return self.group.member(self.index).state_dict(*args, destination=destination, prefix=prefix,
                                                        keep_vars=keep_vars)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        error_msgs.append(f"{prefix or '(root)'}: this layer runs fused with {'+'.join(self.group.names)}; "
                          f"call sparsecore.unfuse_projections_(model) before loading a state dict into it")

    def extra_repr(self) -> str:
        lo, hi = self.group.bounds[self.index]
        return f"rows {lo}:{hi} of {'+'.join(self.group.names)}"

"""The torch.library namespace all sparsecore ops are defined in, and the registration
shared by the matmul families (functional op, out variant, fake kernels)."""

from __future__ import annotations

import torch

from ._common import output_shape, prepare

lib = torch.library.Library("sparsecore", "DEF")

# op family -> (check, launch) of ``{op}_mm`` on the CPU; see run_checked.
_CPU_FAMILIES: dict = {}


def register_matmul(op: str, check, launch, devices: tuple[str, ...]) -> None:
    """``{op}_mm`` and ``{op}_mm_out`` whose arguments are the format's tensors and ``n_cols``
    (the weight) followed by ``dense, bias, linear`` (and ``out``). ``check(*weight)`` checks
    the weight's arguments and returns its row count; ``launch(*weight, ops)`` runs the
    kernel on checked arguments and the :class:`~._common.Operands` of one call."""

    def run(*args):
        *weight, dense, bias, linear, out = args
        rows = check(*weight)
        launch(*weight, prepare(weight[0].device, dense, bias, rows, weight[-1], linear, out))

    def functional(*args):
        *weight, dense, bias, linear = args
        if not isinstance(dense, torch.Tensor):
            raise TypeError(f"dense operand must be a torch.Tensor, got {type(dense).__name__}")
        rows = check(*weight)
        out = torch.empty(output_shape(rows, weight[-1], dense, linear), dtype=dense.dtype, device=dense.device)
        launch(*weight, prepare(weight[0].device, dense, bias, rows, weight[-1], linear, out, out_is_fresh=True))
        return out

    def fake(*args):
        *weight, dense, _bias, linear = args
        return dense.new_empty(output_shape(check(*weight), weight[-1], dense, linear))

    def fake_out(*args):
        return None

    if "cpu" in devices:
        _CPU_FAMILIES[op] = (check, launch)
    for device in devices:
        torch.library.impl(f"sparsecore::{op}_mm", device, lib=lib)(functional)
        torch.library.impl(f"sparsecore::{op}_mm_out", device, lib=lib)(run)
    torch.library.register_fake(f"sparsecore::{op}_mm", lib=lib)(fake)
    torch.library.register_fake(f"sparsecore::{op}_mm_out", lib=lib)(fake_out)


def _same(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(x is y if isinstance(x, torch.Tensor) else x == y for x, y in zip(a, b))


def has_cpu_kernel(op: str) -> bool:
    return op in _CPU_FAMILIES


def run_checked(op: str, owner, weight: tuple, dense: torch.Tensor, bias, linear: bool) -> torch.Tensor:
    """``{op}_mm`` on the CPU without the dispatcher, for eager inference: the weight's
    checks run once per set of tensors (remembered on ``owner``, the format object, beside
    the exact tensors they passed: a copy of the object carries copies that pass them too,
    and replaced tensors are checked again); the input's checks and the kernel run as in
    the op. The caller has checked that the weight's tensors were not modified in place."""
    check, launch = _CPU_FAMILIES[op]
    memo = owner.__dict__.get("_checked_cpu_args")
    if memo is None or not _same(memo[0], weight):
        memo = (weight, check(*weight))
        owner.__dict__["_checked_cpu_args"] = memo
    rows, n_cols = memo[1], weight[-1]
    out = torch.empty(output_shape(rows, n_cols, dense, linear), dtype=dense.dtype)
    launch(*weight, prepare(dense.device, dense, bias, rows, n_cols, linear, out, out_is_fresh=True))
    return out

"""The torch.library namespace all sparsecore ops are defined in, and the registration
shared by the matmul families (functional op, out variant, fake kernels)."""

from __future__ import annotations

import torch

from ._common import output_shape

lib = torch.library.Library("sparsecore", "DEF")


def register_matmul(op: str, run, rows_of, devices: tuple[str, ...]) -> None:
    """``{op}_mm`` and ``{op}_mm_out`` whose arguments are the format's tensors followed by
    ``n_cols, dense, bias, linear`` (and ``out``); ``run`` writes the result into ``out``."""

    def functional(*args):
        n_cols, dense, _bias, linear = args[-4:]
        if not isinstance(dense, torch.Tensor):
            raise TypeError(f"dense operand must be a torch.Tensor, got {type(dense).__name__}")
        out = torch.empty(output_shape(rows_of(args), n_cols, dense, linear), dtype=dense.dtype, device=dense.device)
        run(*args, out)
        return out

    def out_variant(*args):
        run(*args)

    def fake(*args):
        n_cols, dense, _bias, linear = args[-4:]
        return dense.new_empty(output_shape(rows_of(args), n_cols, dense, linear))

    def fake_out(*args):
        return None

    for device in devices:
        torch.library.impl(f"sparsecore::{op}_mm", device, lib=lib)(functional)
        torch.library.impl(f"sparsecore::{op}_mm_out", device, lib=lib)(out_variant)
    torch.library.register_fake(f"sparsecore::{op}_mm", lib=lib)(fake)
    torch.library.register_fake(f"sparsecore::{op}_mm_out", lib=lib)(fake_out)

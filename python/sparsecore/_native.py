"""Loads the compiled extension and applies SPARSECORE_CPU_ISA once."""

from __future__ import annotations

import os
import warnings

from . import _C

_requested = os.environ.get("SPARSECORE_CPU_ISA")
if _requested:
    try:
        _C.set_cpu_isa(_requested)
    except ValueError as exc:
        warnings.warn(f"SPARSECORE_CPU_ISA={_requested!r} ignored: {exc}; using {_C.get_cpu_isa()}", stacklevel=2)

__all__ = ["_C"]

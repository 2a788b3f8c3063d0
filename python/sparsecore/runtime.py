"""Build and runtime information, ISA selection and thread count."""

from __future__ import annotations

import contextlib
from typing import Iterator

from ._native import _C


def info() -> dict:
    """Version, CPU ISA paths (compiled, runnable here, selected), threads, CUDA archs and GPUs.

    Examples
    --------
    >>> import sparsecore
    >>> sorted(sparsecore.info())[:3]
    ['cpu_isa_available', 'cpu_isa_compiled', 'cpu_isa_selected']
    """
    from . import __version__

    d = dict(_C.info())
    d["version"] = __version__
    return d


def cpu_isa() -> str:
    """The CPU ISA path the kernels use now: scalar, avx2, avx512 or avx512-simde."""
    return _C.get_cpu_isa()


def available_cpu_isas() -> list[str]:
    """ISA paths compiled into this build that this CPU can run."""
    return list(_C.info()["cpu_isa_available"])


def set_cpu_isa(name: str) -> None:
    """Force an ISA path (what SPARSECORE_CPU_ISA does at import). Raises ValueError if unavailable."""
    _C.set_cpu_isa(name)


@contextlib.contextmanager
def use_cpu_isa(name: str) -> Iterator[None]:
    """Context manager that runs the CPU kernels on one ISA path, then restores the previous one."""
    previous = cpu_isa()
    set_cpu_isa(name)
    try:
        yield
    finally:
        set_cpu_isa(previous)


def set_num_threads(n: int) -> None:
    """Threads the CPU kernels use (n <= 0 restores the default: SPARSECORE_NUM_THREADS or all cores)."""
    _C.set_num_threads(int(n))


def get_num_threads() -> int:
    return _C.get_num_threads()

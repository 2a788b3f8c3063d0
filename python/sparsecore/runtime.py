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


def set_spin_us(us: int) -> None:
    """Microseconds an idle kernel thread spins before it sleeps (us < 0 restores the default:
    SPARSECORE_SPIN_US or 200). Longer spins save a wake-up between closely spaced kernel
    calls; after 20 us the spin yields its core to any runnable thread (torch's own ops).
    Measured on decode: ``python -m sparsecore.bench spin`` (docs/results.md)."""
    _C.set_spin_us(int(us))


def get_spin_us() -> int:
    return _C.get_spin_us()


def set_thread_backend(backend: str) -> None:
    """Where the CPU kernels' parallel work runs. ``"auto"`` (the default): on the OpenMP
    runtime already loaded in the process (torch's), so torch's ops and ours share one set of
    threads; with two pools, torch's OpenMP workers spin on the cores after each torch op
    and a sparse kernel right after one ran up to 2x slower (docs/results.md, "Two thread
    pools"). ``"own"``: sparsecore's own pool (also SPARSECORE_THREAD_BACKEND=own; always
    the case where no OpenMP runtime is loaded and in fork() children)."""
    if backend not in ("auto", "own"):
        raise ValueError(f"thread backend must be 'auto' or 'own', got {backend!r}")
    _C.set_thread_backend_own(backend == "own")


def get_thread_backend() -> str:
    """``"openmp"`` or ``"own"``: the pool the kernels use now (see :func:`set_thread_backend`)."""
    return _C.get_thread_backend()


@contextlib.contextmanager
def threads_held() -> Iterator[None]:
    """Inside, idle kernel threads keep spinning (yielding their core to any runnable thread)
    instead of sleeping after ``spin_us``: the ~200 kernel calls of a decode step then pay
    no wake-up. Nests; what :func:`hold_threads_during_forward` puts around a forward."""
    _C.hold_threads(True)
    try:
        yield
    finally:
        _C.hold_threads(False)


def _hold(module, args) -> None:
    _C.hold_threads(True)


def _release(module, args, output) -> None:
    _C.hold_threads(False)


def hold_threads_during_forward(model) -> bool:
    """Register forward hooks on ``model`` that hold the kernel threads (:func:`threads_held`)
    while its forward runs, released even if it raises. Idempotent (returns False if the
    hooks were there already). Opt-in: on this project's 2-core machine it measured the same
    as the default 200 us spin (``python -m sparsecore.bench spin``); machines whose
    wake-ups cost more may gain. The hooks are module-level functions, so the model still
    pickles and deep-copies."""
    if _hold in model._forward_pre_hooks.values():
        return False
    model.register_forward_pre_hook(_hold)
    model.register_forward_hook(_release, always_call=True)
    return True

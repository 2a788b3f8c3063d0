"""Timing helpers shared by the benchmarks: medians of repeats and the machine's own limits."""

from __future__ import annotations

import time

import numpy as np
import torch


def median_time(fn, *, min_reps: int = 3, max_reps: int = 15, budget_s: float = 0.4) -> float:
    """Median seconds of ``fn()`` after one warm-up; repeats until ``budget_s`` or ``max_reps``.

    A call slower than 1 s is timed once more and no further, so slow peers stay affordable.
    """
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    reps = 1 if first > 1.0 else max(min_reps, min(max_reps, int(budget_s / max(first, 1e-6))))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


class CacheEvictor:
    """Reads a buffer larger than the last-level cache, so the next call finds its operands in DRAM.

    A decode step of a real model reads each layer's weight once per token, long after the
    rest of the model pushed it out of the caches; a benchmark that repeats one call instead
    finds a weight of a few MiB in L3 some of the time and not at other times (this VM
    showed 0.7 ms and 1.45 ms for the same 4096 x 4096 bf16 2:4 GEMV, depending on what ran
    before). Calling this before every timed call measures the realistic, cold case.
    The read is numpy's single-threaded sum, not a torch op: torch's OpenMP workers spin
    for a while after every call and would take the cores from whatever is timed next
    (except torch itself, which would find them awake).
    """

    def __init__(self, mib: int = 96):
        self._buf = np.ones(mib * 1024 * 1024 // 4, dtype=np.float32)

    def __call__(self) -> None:
        self._buf.sum()


def time_interleaved(fns: dict, *, rounds: int = 3, block_budget_s: float = 0.3, settle_s: float = 0.2,
                     before=None) -> dict:
    """Median seconds of each callable, timed in blocks that alternate between the methods.

    Two effects of this machine shape the schedule. Its speed drifts from second to
    second (shared memory bandwidth), so the methods of one table are measured in
    alternating blocks (``rounds`` blocks each) rather than one after another. And
    thread pools spin after a call (OpenBLAS for up to ~0.1 s, OpenMP for a few ms),
    stealing cores from whatever runs next, so each block starts after ``settle_s``
    of idle time. Within a block a method runs back to back (one warm-up, then up to
    ``block_budget_s``, 3 to 15 runs; a method slower than 1 s runs once); the result
    is the median over all its runs. ``before`` (e.g. a :class:`CacheEvictor`) runs
    untimed before every call.
    """
    samples: dict[str, list[float]] = {n: [] for n in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            time.sleep(settle_s)
            if before is not None:
                before()
            t0 = time.perf_counter()
            fn()
            first = time.perf_counter() - t0
            reps = 1 if first > 1.0 else max(3, min(15, int(block_budget_s / max(first, 1e-6))))
            for _ in range(reps):
                if before is not None:
                    before()
                t0 = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - t0)
    return {n: float(np.median(v)) for n, v in samples.items()}


def measure_read_bandwidth() -> float:
    """Bytes/s the machine reads with all torch threads: median sum over a 512 MiB fp32 tensor."""
    t = torch.ones(128 * 1024 * 1024, dtype=torch.float32)
    s = median_time(lambda: t.sum(), min_reps=5, max_reps=7, budget_s=1.0)
    return t.numel() * 4 / s


def measure_dense_peak() -> float:
    """FLOP/s of the best dense fp32 GEMM available here (torch or numpy), on an in-cache problem.

    Used as the practical FMA peak of this machine for the prefill (N >= 64) fractions.
    """
    n = 1536
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    t_torch = median_time(lambda: torch.mm(a, b), min_reps=5, max_reps=9, budget_s=1.0)
    an, bn = a.numpy(), b.numpy()
    t_np = median_time(lambda: an @ bn, min_reps=5, max_reps=9, budget_s=1.0)
    return 2.0 * n**3 / min(t_torch, t_np)

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

"""GPU benchmark (``python -m sparsecore.bench gpu``, also ``python -m sparsecore.selftest --bench``):
the CUDA kernels (CSR, 2:4 on sparse tensor cores, activation-sparse, flash attention) against
dense torch (cuBLAS, SDPA) on the same GPU in the same run.

Two times per call, because they answer different questions:

- ``stream``: 20 calls queued back to back between two CUDA events, divided by 20; what a model's
  forward pass sees (the CPU queues the next launch while the GPU runs), i.e. the GPU time per
  call unless launching costs more than running.
- ``latency``: one call between two events, synchronised after each; what a lone call costs,
  launch overhead included.

``GB/s`` is the weight bytes a call reads (values and index/metadata for the sparse formats,
the dense weight for cuBLAS) over its stream time, and ``of copy`` that as a fraction of the
device-to-device copy bandwidth measured at the start of the run (bytes read + written), the
ceiling a memory-bound decode kernel can approach. ``--profile`` adds, per kernel family, the
GPU time of every CUDA kernel one call launches (torch.profiler), so launch-bound and
kernel-bound costs can be told apart.
"""

from __future__ import annotations

import argparse
import json

import torch

from .. import CSR, NM, sparse_linear

_STREAM_CALLS = 20


def _sync_time(fn, reps: int) -> list[float]:
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return times


def time_cuda(fn, reps: int = 15) -> dict:
    """Median ``stream`` and ``latency`` milliseconds of ``fn`` (see the module docstring)."""
    for _ in range(5):
        fn()
    torch.cuda.synchronize()

    def queued():
        for _ in range(_STREAM_CALLS):
            fn()

    stream = sorted(t / _STREAM_CALLS for t in _sync_time(queued, reps))
    latency = sorted(_sync_time(fn, reps * 2))
    return {"stream_ms": stream[len(stream) // 2], "latency_ms": latency[len(latency) // 2]}


def copy_bandwidth_gbs() -> float:
    """Device-to-device copy of 1 GiB, bytes read + written per second (best of 5)."""
    src = torch.empty(1 << 28, dtype=torch.float32, device="cuda")
    dst = torch.empty_like(src)
    best = min(_sync_time(lambda: dst.copy_(src), 5))
    return 2 * (1 << 30) / (best * 1e-3) / 1e9


def _weight_bytes(a) -> int:
    if isinstance(a, CSR):
        return sum(t.numel() * t.element_size() for t in (a.values, a.col_idx, a.row_ptr))
    if isinstance(a, NM):
        return sum(t.numel() * t.element_size() for t in (a.values, a.mma_meta))
    return a.numel() * a.element_size()


def _row(rows_out, table, shape, n, dtype, extra, dense_w, dense_fn, sparse_w, sparse_fn, copy_gbs):
    d, s = time_cuda(dense_fn), time_cuda(sparse_fn)
    gbs = _weight_bytes(sparse_w) / (s["stream_ms"] * 1e-3) / 1e9
    r = {"table": table, "shape": shape, "n": n, "dtype": str(dtype)[6:], **extra,
         "dense_stream_ms": d["stream_ms"], "dense_latency_ms": d["latency_ms"],
         "sparse_stream_ms": s["stream_ms"], "sparse_latency_ms": s["latency_ms"],
         "speedup_stream": d["stream_ms"] / s["stream_ms"], "speedup_latency": d["latency_ms"] / s["latency_ms"],
         "dense_gbs": _weight_bytes(dense_w) / (d["stream_ms"] * 1e-3) / 1e9, "sparse_gbs": gbs,
         "sparse_of_copy": gbs / copy_gbs}
    rows_out.append(r)
    ex = " ".join(f"{v:>8}" for v in extra.values())
    print(f"{shape:>12} {n:>5} {r['dtype']:>9} {ex} {r['dense_stream_ms']:>8.4f} {r['sparse_stream_ms']:>8.4f} "
          f"{r['speedup_stream']:>6.2f}x {r['dense_latency_ms']:>8.4f} {r['sparse_latency_ms']:>8.4f} "
          f"{r['speedup_latency']:>6.2f}x {gbs:>7.0f} {r['sparse_of_copy']:>6.0%}")


def _header(title: str, extra: list[str]) -> None:
    print(f"\n{title}")
    ex = " ".join(f"{e:>8}" for e in extra)
    print(f"{'shape':>12} {'n':>5} {'dtype':>9} {ex} {'dense':>8} {'sparse':>8} {'x':>7} {'dense1':>8} "
          f"{'sparse1':>8} {'x1':>7} {'GB/s':>7} {'of copy':>6}")
    print(f"{'':>12} {'':>5} {'':>9} {' ' * len(ex)} {'(stream ms, 20 queued calls)':^32} "
          f"{'(latency ms, one synced call)':^33}")


def _random_sparse(rows, cols, density, gen):
    vals = torch.randn(rows, cols, generator=gen)
    return vals * (torch.rand(rows, cols, generator=gen) < density)


def bench_csr(rows_out, copy_gbs, quick):
    _header("CSR (warp per row) vs dense torch (cuBLAS)", ["sparsity"])
    gen = torch.Generator().manual_seed(1)
    shapes = [(4096, 4096)] if quick else [(4096, 4096), (11008, 4096)]
    for rows, cols in shapes:
        for n in (1, 16) if quick else (1, 16, 64):
            for sparsity in (0.5, 0.9):
                for dtype in (torch.float16, torch.float32):
                    w = _random_sparse(rows, cols, 1 - sparsity, gen).to("cuda", dtype)
                    x = torch.randn(n, cols, generator=gen).to("cuda", dtype)
                    a = CSR.from_dense(w)
                    _row(rows_out, "csr", f"{rows}x{cols}", n, dtype, {"sparsity": f"{sparsity:.0%}"}, w,
                         lambda: torch.nn.functional.linear(x, w), a, lambda: sparse_linear(x, a), copy_gbs)


def bench_nm(rows_out, copy_gbs, quick):
    _header("2:4 on sparse tensor cores (mma.sp) vs dense torch (cuBLAS), same dtype", [])
    gen = torch.Generator().manual_seed(2)
    shapes = [(4096, 4096)] if quick else [(4096, 4096), (11008, 4096), (4096, 11008)]
    for rows, cols in shapes:
        for n in (1, 16, 2048) if quick else (1, 16, 256, 2048):
            for dtype in (torch.float16, torch.bfloat16):
                a = NM.from_dense(torch.randn(rows, cols, generator=gen), scores="magnitude", dtype=dtype).to("cuda")
                wd = a.to_dense()
                x = torch.randn(n, cols, generator=gen).to("cuda", dtype)
                _row(rows_out, "nm", f"{rows}x{cols}", n, dtype, {}, wd, lambda: torch.nn.functional.linear(x, wd),
                     a, lambda: sparse_linear(x, a), copy_gbs)


def bench_act(rows_out, copy_gbs, quick):
    from ..activation import act_sparse_linear, pack_weight

    _header("activation-sparse linear (50% of inputs dropped) vs dense torch (cuBLAS)", [])
    gen = torch.Generator().manual_seed(4)
    shapes = [(4096, 4096)] if quick else [(4096, 4096), (11008, 4096), (4096, 11008)]
    for rows, cols in shapes:
        for n in (1, 4, 16):
            for dtype in (torch.float16, torch.bfloat16):
                w = torch.randn(rows, cols, generator=gen).to("cuda", dtype)
                packed = pack_weight(w)
                x = torch.randn(n, cols, generator=gen).to("cuda", dtype)
                _row(rows_out, "act", f"{rows}x{cols}", n, dtype, {}, w, lambda: torch.nn.functional.linear(x, w),
                     packed, lambda: act_sparse_linear(x, packed, rows, 0.6745), copy_gbs)  # median of |N(0,1)|


def bench_attention(rows_out, copy_gbs, quick):
    """Prefill (causal, window, 90% block-sparse) and decode (dense, split-KV) against torch's
    SDPA (flash backend, causal) on the same GPU; TFLOP/s over the score pairs computed."""
    import torch.nn.functional as F

    import os

    from ..attention import BlockMask, flash_attention
    from ..ops.attention import CUDA_OPT_IN

    os.environ[CUDA_OPT_IN] = "1"  # the benchmark times the opt-in kernel (see ops/attention.py)
    gen = torch.Generator().manual_seed(6)
    hq, hkv, d, dtype = 32, 8, 128, torch.bfloat16
    print(f"\nattention (tensor cores) vs torch SDPA, {hq}/{hkv} heads, d={d}, {str(dtype)[6:]}, batch 1")
    print(f"{'case':>34} {'L':>6} {'sparsecore ms':>13} {'SDPA ms':>8} {'vs SDPA':>8} {'TFLOP/s':>8} {'GB/s':>6}")

    def sdpa(q, k, v, causal=True):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)

    for length in ((4096, 16384) if quick else (4096, 16384, 32768)):
        q = torch.randn(1, hq, length, d, generator=gen).to("cuda", dtype)
        k = torch.randn(1, hkv, length, d, generator=gen).to("cuda", dtype)
        v = torch.randn(1, hkv, length, d, generator=gen).to("cuda", dtype)
        t_sdpa = time_cuda(lambda: sdpa(q, k, v), reps=5)["stream_ms"]
        blocks = -(-length // 64)
        causal_blocks = torch.ones(blocks, blocks, dtype=torch.bool).tril()
        sparse = causal_blocks & ((torch.rand(blocks, blocks, generator=gen) < 0.1) | torch.eye(blocks, dtype=torch.bool))
        mask90 = BlockMask.from_dense(sparse, q_len=length, kv_len=length)
        pairs = {"dense causal": length * (length + 1) / 2, "window 1024 + 4 sinks": length * 1024.0,
                 "90% block-sparse (+diagonal)": float(sparse.sum()) * 64 * 64}
        runs = {"dense causal": lambda: flash_attention(q, k, v),
                "window 1024 + 4 sinks": lambda: flash_attention(q, k, v, window=1024, sinks=4),
                "90% block-sparse (+diagonal)": lambda: flash_attention(q, k, v, block_mask=mask90)}
        for name, fn in runs.items():
            t = time_cuda(fn, reps=5)["stream_ms"]
            tflops = 4 * hq * d * pairs[name] / (t * 1e-3) / 1e12
            rows_out.append({"table": "attention", "case": name, "L": length, "ms": t, "sdpa_ms": t_sdpa,
                             "tflops": tflops})
            print(f"{name:>34} {length:>6} {t:>13.3f} {t_sdpa:>8.3f} {t_sdpa / t:>7.2f}x {tflops:>8.0f} {'-':>6}")
    for kv in ((16384,) if quick else (16384, 65536)):
        for batch in (1, 4):
            q = torch.randn(batch, hq, 1, d, generator=gen).to("cuda", dtype)
            k = torch.randn(batch, hkv, kv, d, generator=gen).to("cuda", dtype)
            v = torch.randn(batch, hkv, kv, d, generator=gen).to("cuda", dtype)
            t_sdpa = time_cuda(lambda: sdpa(q, k, v, causal=False))["stream_ms"]
            t = time_cuda(lambda: flash_attention(q, k, v))["stream_ms"]
            gbs = 2 * k.numel() * k.element_size() / (t * 1e-3) / 1e9
            rows_out.append({"table": "attention", "case": f"decode batch {batch}", "L": kv, "ms": t, "sdpa_ms": t_sdpa,
                             "gbs": gbs, "of_copy": gbs / copy_gbs})
            print(f"{'decode batch ' + str(batch) + ' (of copy BW ' + format(gbs / copy_gbs, '.0%') + ')':>34} {kv:>6} "
                  f"{t:>13.3f} {t_sdpa:>8.3f} {t_sdpa / t:>7.2f}x {'-':>8} {gbs:>6.0f}")


def profile_kernels() -> list[dict]:
    """GPU time of each CUDA kernel (and memset) one call of every family launches."""
    from torch.profiler import ProfilerActivity, profile

    from ..activation import act_sparse_linear, pack_weight

    gen = torch.Generator().manual_seed(5)
    rows, cols = 4096, 4096
    w = _random_sparse(rows, cols, 0.5, gen).to("cuda", torch.float16)
    csr = CSR.from_dense(w)
    nm = NM.from_dense(w.float().cpu(), scores="magnitude", dtype=torch.float16).to("cuda")
    packed = pack_weight(w)
    cases = []
    for n in (1, 16):
        x = torch.randn(n, cols, generator=gen).to("cuda", torch.float16)
        cases += [(f"dense n={n}", lambda x=x: torch.nn.functional.linear(x, w)),
                  (f"csr 50% n={n}", lambda x=x: sparse_linear(x, csr)),
                  (f"2:4 n={n}", lambda x=x: sparse_linear(x, nm)),
                  (f"act 50% n={n}", lambda x=x: act_sparse_linear(x, packed, rows, 0.6745))]
    out = []
    print(f"\nGPU time per call by kernel (torch.profiler, {rows}x{cols} fp16, 20 calls)")
    print(f"{'call':>16}  {'kernel':<60} {'us/call':>8}")
    for name, fn in cases:
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(20):
                fn()
            torch.cuda.synchronize()
        for ev in prof.key_averages():
            us = ev.self_device_time_total / 20
            if us <= 0:
                continue
            out.append({"call": name, "kernel": ev.key, "us_per_call": us})
            print(f"{name:>16}  {ev.key[:60]:<60} {us:>8.1f}")
    return out


def run(quick: bool = False, profile: bool = True, json_path: str | None = None) -> dict:
    if not torch.cuda.is_available():
        raise SystemExit("the GPU benchmark needs a CUDA GPU visible to torch")
    props = torch.cuda.get_device_properties(0)
    copy_gbs = copy_bandwidth_gbs()
    print(f"GPU: {props.name}, {props.multi_processor_count} SMs; device-to-device copy {copy_gbs:.0f} GB/s "
          "(read + written)")
    rows: list = []
    bench_csr(rows, copy_gbs, quick)
    bench_nm(rows, copy_gbs, quick)
    bench_act(rows, copy_gbs, quick)
    bench_attention(rows, copy_gbs, quick)
    result = {"gpu": props.name, "copy_gbs": copy_gbs, "rows": rows,
              "profile": profile_kernels() if profile else []}
    if json_path:
        with open(json_path, "w") as f:
            json.dump(result, f, indent=1)
    return result


def main(args: argparse.Namespace) -> int:
    run(quick=args.quick, profile=not args.no_profile, json_path=args.json)
    return 0

"""2:4 benchmark: sparsecore NM vs dense torch (same dtype), the best dense fp32 path
(torch or numpy), and sparsecore CSR at the same 50%, in one run.

Llama-7B layer shapes, N (tokens) in {1, 8, 64, 256}, ``x @ W.T``. Every method of a cell
is timed in alternating blocks (see ``time_interleaved``), each call with cold caches
(``CacheEvictor``: in a real model every layer's weight comes from DRAM). Besides the
ratios the table prints the fraction of the measured read bandwidth the 2:4 kernel reaches
(N = 1: bytes of values + bitmap + x per second) or of the best dense fp32 GEMM rate
(N > 1: useful FLOPs, 2 x nonzeros x N, per second).
"""

from __future__ import annotations

import json

import torch

import sparsecore

from ._timing import CacheEvictor, measure_dense_peak, measure_read_bandwidth, time_interleaved

SHAPES = [(4096, 4096), (11008, 4096), (4096, 11008)]
NS = [1, 8, 64, 256]
DTYPES = [torch.float32, torch.bfloat16]


def run_cell(rows: int, cols: int, n: int, dtype: torch.dtype, gen: torch.Generator, evict: CacheEvictor) -> dict:
    w = torch.randn(rows, cols, generator=gen)
    nm = sparsecore.NM.from_dense(w, scores="magnitude", dtype=dtype)
    dense = nm.to_dense()
    csr = sparsecore.CSR.from_dense(dense)
    x = torch.randn(n, cols, generator=gen).to(dtype)
    fns = {
        "nm": lambda: sparsecore.sparse_linear(x, nm),
        "csr": lambda: sparsecore.sparse_linear(x, csr),
        "dense": lambda: torch.nn.functional.linear(x, dense),
    }
    if dtype == torch.float32:
        xn, wn = x.numpy(), dense.numpy()
        fns["numpy"] = lambda: xn @ wn.T
    t = time_interleaved(fns, before=evict)
    best_dense = min(t["dense"], t.get("numpy", float("inf")))
    return {"rows": rows, "cols": cols, "n": n, "dtype": str(dtype).replace("torch.", ""),
            "nm_ms": t["nm"] * 1e3, "csr_ms": t["csr"] * 1e3, "dense_ms": t["dense"] * 1e3,
            "numpy_ms": t["numpy"] * 1e3 if "numpy" in t else None,
            "vs_dense": t["dense"] / t["nm"], "vs_best_dense": best_dense / t["nm"], "vs_csr": t["csr"] / t["nm"],
            "nm_bytes": nm.nbytes + x.numel() * x.element_size(), "nnz": nm.nnz}


def print_table(rows: list[dict], bandwidth: float, peak: float) -> None:
    print(f"\nmeasured read bandwidth {bandwidth / 1e9:.1f} GB/s; best dense fp32 GEMM {peak / 1e9:.1f} GFLOP/s "
          f"({sparsecore.get_num_threads()} threads, CPU path {sparsecore.cpu_isa()})")
    print("every call with cold caches; speedup = other's time / sparsecore 2:4 time;")
    print("best dense = min(torch, numpy) for fp32, torch for bf16;")
    print("frac = 2:4 bytes/s / read bandwidth (N=1) or useful GFLOP/s / best dense GEMM rate (N>1).\n")
    print("| shape | N | dtype | 2:4 ms | vs dense torch | vs best dense | vs CSR 50% | frac |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        secs = r["nm_ms"] / 1e3
        frac = r["nm_bytes"] / secs / bandwidth if r["n"] == 1 else 2.0 * r["nnz"] * r["n"] / secs / peak
        print(f"| {r['rows']}x{r['cols']} | {r['n']} | {r['dtype']} | {r['nm_ms']:.3f} | {r['vs_dense']:.2f}x | "
              f"{r['vs_best_dense']:.2f}x | {r['vs_csr']:.2f}x | {frac:.0%} |")


def main(args) -> int:
    shapes = SHAPES[:1] if args.quick else SHAPES
    ns = [1, 64] if args.quick else NS
    gen = torch.Generator().manual_seed(0)
    bandwidth = measure_read_bandwidth()
    peak = measure_dense_peak()
    evict = CacheEvictor()
    rows = []
    for rows_, cols in shapes:
        for n in ns:
            for dtype in DTYPES:
                rows.append(run_cell(rows_, cols, n, dtype, gen, evict))
                r = rows[-1]
                print(f"{rows_}x{cols} N={n} {r['dtype']}: 2:4 {r['nm_ms']:.3f} ms, dense {r['dense_ms']:.3f} ms, "
                      f"CSR {r['csr_ms']:.3f} ms", flush=True)
    print_table(rows, bandwidth, peak)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"bandwidth_bytes_per_s": bandwidth, "dense_peak_flops": peak, "info": sparsecore.info(),
                       "rows": rows}, fh, indent=2)
    return 0

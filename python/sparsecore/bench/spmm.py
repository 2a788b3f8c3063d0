"""``python -m sparsecore.bench spmm``: CSR / BSR SpMM against dense and sparse peers, one run.

Grid: Llama-7B layer shapes (4096x4096, 11008x4096, 4096x11008), N in {1, 8, 64, 256},
unstructured sparsity 50/70/90/95% (block-structured 16x16 for BSR). Each cell times, in
the same process: sparsecore CSR (fp32 and, for N <= 8, bf16 values), sparsecore BSR,
dense torch ``F.linear`` (fp32, bf16), numpy fp32 (OpenBLAS), ``torch.sparse.mm`` (CSR)
and ``scipy.sparse``. The ratio table prints speedups (>1 means sparsecore is faster),
effective GB/s and the fraction of the measured read bandwidth (N = 1) or of the best
dense GEMM rate (N >= 64).
"""

from __future__ import annotations

import json
import os
import platform

import numpy as np
import torch
import torch.nn.functional as F

import sparsecore

from ._timing import measure_dense_peak, measure_read_bandwidth, time_interleaved

SHAPES = [(4096, 4096), (11008, 4096), (4096, 11008)]  # (out_features, in_features)
NS = [1, 8, 64, 256]
SPARSITIES = [0.5, 0.7, 0.9, 0.95]
BSR_BLOCK = (16, 16)


def _unstructured(rows: int, cols: int, sparsity: float, gen: torch.Generator) -> torch.Tensor:
    w = torch.randn(rows, cols, generator=gen)
    keep = torch.rand(rows, cols, generator=gen) >= sparsity
    return w * keep


def _block_structured(rows: int, cols: int, sparsity: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    bh, bw = BSR_BLOCK
    bmask = torch.rand(rows // bh, cols // bw, generator=gen) >= sparsity
    w = torch.randn(rows, cols, generator=gen) * bmask.repeat_interleave(bh, 0).repeat_interleave(bw, 1)
    return w, bmask


def _row(cell: dict, results: dict, bandwidth: float, peak: float) -> dict:
    """Derived ratios for one cell (speedup = peer time / sparsecore time)."""
    t = results
    n = cell["n"]
    out = dict(cell)
    out.update({k: v for k, v in t.items()})
    csr = t["sc_csr_f32"]
    dense_best = min(t["dense_torch_f32"], t["dense_numpy_f32"])
    out["x_dense_f32"] = t["dense_torch_f32"] / csr
    out["x_best_dense_f32"] = dense_best / csr
    if "torch_sparse_f32" in t:
        out["x_torch_sparse"] = t["torch_sparse_f32"] / csr
    if "scipy_f32" in t:
        out["x_scipy"] = t["scipy_f32"] / csr
    if "sc_csr_bf16" in t:
        out["x_dense_bf16"] = t["dense_torch_bf16"] / t["sc_csr_bf16"]
        out["x_best_dense_bf16"] = dense_best / t["sc_csr_bf16"]
    if "sc_bsr_f32" in t:
        out["x_bsr_dense_f32"] = t["dense_torch_f32"] / t["sc_bsr_f32"]
        out["x_bsr_best_dense"] = dense_best / t["sc_bsr_f32"]
    bytes_f32 = cell["csr_f32_bytes"] + 4.0 * n * (cell["k"] + cell["m"])
    out["csr_f32_gbs"] = bytes_f32 / csr / 1e9
    out["csr_f32_gflops"] = 2.0 * cell["nnz"] * n / csr / 1e9
    if n == 1:
        out["csr_f32_frac"] = bytes_f32 / csr / bandwidth
        if "sc_csr_bf16" in t:
            out["csr_bf16_frac"] = (cell["csr_bf16_bytes"] + 4.0 * (cell["k"] + cell["m"])) / t["sc_csr_bf16"] / bandwidth
    else:
        out["csr_f32_frac"] = 2.0 * cell["nnz"] * n / csr / peak
    return out


def run_cell(m: int, k: int, n: int, sparsity: float, w: torch.Tensor, formats: dict, peers: set,
             gen: torch.Generator) -> tuple[dict, dict]:
    x = torch.randn(n, k, generator=gen)
    xn = x.numpy()
    a32, bsr = formats["csr_f32"], formats["bsr_f32"]
    wn = formats["dense_np"]
    fns = {
        "sc_csr_f32": lambda: sparsecore.sparse_linear(x, a32),
        "dense_torch_f32": lambda: F.linear(x, w),
        "dense_numpy_f32": lambda: xn @ wn.T,
        "sc_bsr_f32": lambda: sparsecore.sparse_linear(x, bsr),
    }
    if n <= 8:
        xb, a16, wbf = x.to(torch.bfloat16), formats["csr_bf16"], formats["dense_bf16"]
        fns["sc_csr_bf16"] = lambda: sparsecore.sparse_linear(xb, a16)
        fns["dense_torch_bf16"] = lambda: F.linear(xb, wbf)
    if "torch_sparse" in peers:
        ts, xt = formats["torch_csr"], x.T.contiguous()
        fns["torch_sparse_f32"] = lambda: torch.sparse.mm(ts, xt)
    if "scipy" in peers:
        sp, xtn = formats["scipy"], np.ascontiguousarray(xn.T)
        fns["scipy_f32"] = lambda: sp @ xtn
    t = time_interleaved(fns)
    # Agreement check: a benchmark of a wrong kernel is worthless.
    ref = F.linear(x.double(), w.double())
    err = (sparsecore.sparse_linear(x, a32).double() - ref).abs().max().item()
    scale = ref.abs().max().item() + 1e-12
    if err > 1e-4 * scale:
        raise AssertionError(f"sparsecore CSR disagrees with dense: max error {err} (scale {scale})")
    cell = {"m": m, "k": k, "n": n, "sparsity": sparsity, "nnz": a32.nnz,
            # Bytes the kernel reads: the GEMV uses the bitmap plan when the CSR has one.
            "csr_f32_bytes": a32.gemv_bytes if n == 1 else a32.nbytes,
            "csr_bf16_bytes": formats["csr_bf16"].gemv_bytes if n == 1 else formats["csr_bf16"].nbytes,
            "csr_f32_bytes_per_nnz": a32.bytes_per_nonzero,
            "csr_bf16_bytes_per_nnz": formats["csr_bf16"].bytes_per_nonzero}
    return cell, t


def _build_formats(w: torch.Tensor, wb: torch.Tensor, bmask: torch.Tensor, peers: set) -> dict:
    f = {
        "csr_f32": sparsecore.CSR.from_dense(w),
        "csr_bf16": sparsecore.CSR.from_dense(w, dtype=torch.bfloat16),
        "dense_bf16": w.to(torch.bfloat16),
        "dense_np": w.numpy(),
        "bsr_f32": sparsecore.BSR.from_dense(wb, BSR_BLOCK, block_mask=bmask),
    }
    if "torch_sparse" in peers:
        f["torch_csr"] = w.to_sparse_csr()
    if "scipy" in peers:
        import scipy.sparse

        f["scipy"] = scipy.sparse.csr_matrix(w.numpy())
    return f


def _fmt(v, spec: str = ".2f", suffix: str = "x") -> str:
    return "-" if v is None else f"{v:{spec}}{suffix}"


def print_table(rows: list[dict], bandwidth: float, peak: float) -> None:
    print(f"\nmeasured read bandwidth {bandwidth / 1e9:.1f} GB/s; best dense fp32 GEMM {peak / 1e9:.1f} GFLOP/s "
          f"({torch.get_num_threads()} torch threads, {sparsecore.get_num_threads()} sparsecore threads, "
          f"CPU path {sparsecore.cpu_isa()})")
    print("speedups = peer time / sparsecore time (>1: sparsecore faster). 'best dense' = faster of torch and numpy fp32.")
    print("frac = effective bandwidth / measured read bandwidth (N=1), or GFLOP/s / best dense GEMM rate (N>1).\n")
    head = (f"{'shape':>11} {'N':>4} {'spars':>5} | {'csr f32 ms':>10} {'vs dense':>8} {'vs best':>8} "
            f"{'vs t.sparse':>11} {'vs scipy':>8} {'GB/s':>6} {'frac':>5} | {'bf16 vs dense':>13} {'vs best':>8} "
            f"{'frac':>5} | {'bsr16 vs dense':>14} {'vs best':>8}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['m']:>5}x{r['k']:<5} {r['n']:>4} {r['sparsity']:>5.0%} | {r['sc_csr_f32'] * 1e3:>10.3f} "
              f"{_fmt(r.get('x_dense_f32')):>8} {_fmt(r.get('x_best_dense_f32')):>8} "
              f"{_fmt(r.get('x_torch_sparse')):>11} {_fmt(r.get('x_scipy')):>8} {r['csr_f32_gbs']:>6.1f} "
              f"{_fmt(r.get('csr_f32_frac'), '.0%', ''):>5} | {_fmt(r.get('x_dense_bf16')):>13} "
              f"{_fmt(r.get('x_best_dense_bf16')):>8} {_fmt(r.get('csr_bf16_frac'), '.0%', ''):>5} | "
              f"{_fmt(r.get('x_bsr_dense_f32')):>14} {_fmt(r.get('x_bsr_best_dense')):>8}")


def main(args) -> int:
    shapes = SHAPES[:1] if args.quick else SHAPES
    ns = [1, 64] if args.quick else NS
    sparsities = [0.5, 0.9] if args.quick else SPARSITIES
    if args.shape:
        shapes = [tuple(int(v) for v in s.lower().split("x")) for s in args.shape]
    ns = args.n or ns
    sparsities = args.sparsity or sparsities
    for s in sparsities:
        if not 0.0 <= s < 1.0:
            raise SystemExit(f"sparsity must be in [0, 1), got {s}")
    peers = {"torch_sparse", "scipy"} - set(args.skip_peer or [])
    gen = torch.Generator().manual_seed(0)
    print(f"sparsecore {sparsecore.__version__} SpMM benchmark on {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}")
    bandwidth = measure_read_bandwidth()
    peak = measure_dense_peak()
    rows = []
    for m, k in shapes:
        for sparsity in sparsities:
            w = _unstructured(m, k, sparsity, gen)
            wb, bmask = _block_structured(m, k, sparsity, gen)
            formats = _build_formats(w, wb, bmask, peers)
            for n in ns:
                cell, times = run_cell(m, k, n, sparsity, w, formats, peers, gen)
                row = _row(cell, times, bandwidth, peak)
                rows.append(row)
                print(f"  done {m}x{k} N={n} sparsity={sparsity:.0%}: csr {times['sc_csr_f32'] * 1e3:.3f} ms, "
                      f"dense {times['dense_torch_f32'] * 1e3:.3f} ms", flush=True)
            del formats, w, wb
    print_table(rows, bandwidth, peak)
    print("\nbytes per nonzero read (CSR arrays: uint16 column indices + int64 row pointers; "
          "GEMV: values + bitmap plan where density >= 30%):")
    for r in rows:
        if r["n"] == 1 and r["m"] == rows[0]["m"] and r["k"] == rows[0]["k"]:
            print(f"  sparsity {r['sparsity']:.0%}: CSR fp32 {r['csr_f32_bytes_per_nnz']:.2f}, bf16 "
                  f"{r['csr_bf16_bytes_per_nnz']:.2f}; GEMV fp32 {r['csr_f32_bytes'] / r['nnz']:.2f}, "
                  f"bf16 {r['csr_bf16_bytes'] / r['nnz']:.2f}; dense fp32 {4 / (1 - r['sparsity']):.2f}, "
                  f"bf16 {2 / (1 - r['sparsity']):.2f} per kept weight")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump({"bandwidth_bytes_per_s": bandwidth, "dense_peak_flops": peak, "info": sparsecore.info(),
                       "rows": rows}, fh, indent=1)
        print(f"wrote {args.json}")
    return 0

"""``python -m sparsecore.bench activation``: the activation-sparse kernels against dense
torch, the best dense path and a torch column-gather peer, in one run.

1. Kernel: Llama-7B layer shapes, N (tokens) in {1, 4, 16}, activation sparsity 40/50%,
   bf16 and fp32. Peers in the same cell: dense torch ``F.linear`` (same dtype), numpy fp32
   (OpenBLAS; the best dense path here), and "torch gather": ``x[:, idx] @ W.T[idx]`` with
   the active channels' rows of a transposed weight (what one writes without a kernel).
   frac = bytes the kernel must read (active runs + x) / measured read bandwidth.
2. Composition (N = 1, bf16): activation sparsity on top of a 50%-pruned or 2:4 weight,
   against weight sparsity alone (sparsecore CSR / 2:4) and activation sparsity alone.
3. R-Sparse layer cost: exact path + rank-r path at the same byte budget as plain 50%.
4. Decode tokens/s on a Llama-7B-shaped model (2 decoder layers, random weights, TEAL
   thresholds calibrated on random tokens) dense vs 40/50% activation sparsity.

Every method of a cell is timed in alternating blocks (``time_interleaved``).
"""

from __future__ import annotations

import copy
import gc
import json
import math

import torch

import sparsecore
from sparsecore.activation import ActSparseLinear, PrefillPolicy, TEALConfig, act_sparse_linear, pack_weight, \
    pack_weight_sparse

from ._timing import measure_read_bandwidth, time_interleaved

SHAPES = [(4096, 4096), (11008, 4096), (4096, 11008)]  # (out_features, in_features)
NS = [1, 4, 16]
SPARSITIES = [0.4, 0.5]


def _inputs(n: int, in_f: int, gen: torch.Generator) -> torch.Tensor:
    """Unit-Laplace activations (TEAL's observation for the inputs of a block's linears),
    independent per token, so the union over N tokens is as large as it gets."""
    u = torch.rand(n, in_f, generator=gen, dtype=torch.float64) - 0.5
    return (-torch.sign(u) * torch.log1p(-2.0 * u.abs())).float()


def _threshold_for(sparsity: float) -> float:
    return -math.log(1.0 - sparsity)  # P(|x| <= t) = 1 - exp(-t) for a unit Laplace


def kernel_cell(out_f: int, in_f: int, n: int, sparsity: float, dtype: torch.dtype, gen: torch.Generator,
                weights: dict) -> dict:
    key = (out_f, in_f, dtype)
    if key not in weights:
        weights.clear()
        gc.collect()
        w = torch.randn(out_f, in_f, generator=gen).to(dtype)
        weights[key] = (w, pack_weight(w), w.t().contiguous(), w.float().numpy() if dtype == torch.float32 else None)
    w, packed, wt, wn = weights[key]
    x = _inputs(n, in_f, gen).to(dtype)
    t = _threshold_for(sparsity)
    active = (x.abs().float() > t)
    union = active.any(dim=0)
    idx = union.nonzero().squeeze(1)
    fns = {
        "act": lambda: act_sparse_linear(x, packed, out_f, t),
        "dense": lambda: torch.nn.functional.linear(x, w),
        "gather": lambda: (x * active)[:, idx] @ wt.index_select(0, idx),
    }
    if wn is not None:
        xn = x.numpy()
        fns["numpy"] = lambda: xn @ wn.T
    times = time_interleaved(fns)
    best = min(times["dense"], times.get("numpy", math.inf))
    read = int(union.sum()) * packed.shape[1] * packed.element_size() + x.numel() * x.element_size()
    return {"shape": f"{out_f}x{in_f}", "n": n, "sparsity": sparsity, "dtype": str(dtype).replace("torch.", ""),
            "measured_sparsity": 1.0 - float(active.float().mean()), "union_density": float(union.float().mean()),
            "act_ms": times["act"] * 1e3, "dense_ms": times["dense"] * 1e3, "gather_ms": times["gather"] * 1e3,
            "numpy_ms": times["numpy"] * 1e3 if "numpy" in times else None,
            "vs_dense": times["dense"] / times["act"], "vs_best_dense": best / times["act"],
            "vs_gather": times["gather"] / times["act"], "read_bytes": read}


def composition_rows(gen: torch.Generator, shapes) -> list[dict]:
    from sparsecore.pruning.masks import nm_mask

    rows = []
    for out_f, in_f in shapes:
        w = torch.randn(out_f, in_f, generator=gen)
        x = _inputs(1, in_f, gen).bfloat16()
        t = _threshold_for(0.5)
        unstructured = w * (torch.rand(out_f, in_f, generator=gen) >= 0.5)
        two_four = w * nm_mask(w.abs(), 2, 4)
        dense16 = w.bfloat16()
        packed = pack_weight(dense16)
        csr = sparsecore.CSR.from_dense(unstructured, dtype=torch.bfloat16)
        nm = sparsecore.NM.from_dense(two_four, dtype=torch.bfloat16)
        runs_u = pack_weight_sparse(unstructured.bfloat16())
        runs_24 = pack_weight_sparse(two_four.bfloat16())
        fns = {
            "dense torch": lambda: torch.nn.functional.linear(x, dense16),
            "act 50%": lambda: act_sparse_linear(x, packed, out_f, t),
            "weight 50% (CSR)": lambda: sparsecore.sparse_linear(x, csr),
            "weight 2:4": lambda: sparsecore.sparse_linear(x, nm),
            "act 50% + weight 50%": lambda: act_sparse_linear(x, runs_u[0], out_f, t, sparse_runs=runs_u[1:],
                                                              in_features=in_f),
            "act 50% + weight 2:4": lambda: act_sparse_linear(x, runs_24[0], out_f, t, sparse_runs=runs_24[1:],
                                                              in_features=in_f),
        }
        times = time_interleaved(fns)
        for name, sec in times.items():
            rows.append({"shape": f"{out_f}x{in_f}", "method": name, "ms": sec * 1e3,
                         "vs_dense": times["dense torch"] / sec})
        del csr, nm, runs_u, runs_24, packed
        gc.collect()
    return rows


def rsparse_rows(gen: torch.Generator) -> list[dict]:
    """One 4096x4096 bf16 layer at s = 0.5: plain 50% vs R-Sparse splits of the same budget."""
    from sparsecore.activation import layer_budget

    out_f = in_f = 4096
    w = torch.randn(out_f, in_f, generator=gen)
    lin = torch.nn.Linear(in_f, out_f, bias=False)
    lin.weight.data.copy_(w)
    lin = lin.bfloat16()
    x = _inputs(1, in_f, gen).bfloat16()
    mods = {"plain 50% (alpha 1)": ActSparseLinear.from_linear(lin, _threshold_for(0.5),
                                                                prefill=PrefillPolicy("sparse"))}
    info = {"plain 50% (alpha 1)": (2048, 0)}
    for alpha in (0.9, 0.75):
        b = layer_budget(out_f, in_f, 0.5, alpha)
        down = torch.randn(b.rank, in_f, generator=gen).bfloat16()
        up = torch.randn(out_f, b.rank, generator=gen).bfloat16()
        name = f"R-Sparse alpha {alpha}"
        mods[name] = ActSparseLinear.from_linear(lin, _threshold_for(1.0 - b.keep_fraction), lowrank=(down, up),
                                                 prefill=PrefillPolicy("sparse"))
        info[name] = (b.channels, b.rank)
    dense = lambda: torch.nn.functional.linear(x, lin.weight)  # noqa: E731
    times = time_interleaved({"dense torch": dense, **{k: (lambda m=m: m(x)) for k, m in mods.items()}})
    return [{"method": k, "channels": info.get(k, (in_f, 0))[0], "rank": info.get(k, (in_f, 0))[1],
             "ms": v * 1e3, "vs_dense": times["dense torch"] / v} for k, v in times.items()]


def decode_rows(layers: int, decode_tokens: int, dtypes=(torch.bfloat16, torch.float32)) -> list[dict]:
    from ..demo.llama7b import _llama7b_shaped
    from ..models.speed import compare_speed

    rows = []
    base = _llama7b_shaped(layers)
    gen = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, 1024, (1, 16), generator=gen)
    calibration = [{"input_ids": torch.randint(0, 1024, (1, 64), generator=gen), "use_cache": False}
                   for _ in range(2)]
    for dtype in dtypes:
        dense = base.to(dtype)
        models = {"dense": dense}
        for s in SPARSITIES:
            m = copy.deepcopy(dense)
            sparsecore.sparsify_(m, TEALConfig(s, calibration=calibration, allocation="uniform", progress=False))
            models[f"{s:.0%}"] = m
        speed = compare_speed(models, prompt, new_tokens=decode_tokens)
        for name, sp in speed.items():
            rows.append({"dtype": str(dtype).replace("torch.", ""), "model": name,
                         "decode_tok_s": sp["decode_tok_s"],
                         "vs_dense": sp["decode_tok_s"] / speed["dense"]["decode_tok_s"]})
        del models
        gc.collect()
    return rows


def print_tables(kernel: list[dict], comp: list[dict], rs: list[dict], decode: list[dict], bandwidth: float) -> None:
    print(f"\nmeasured read bandwidth {bandwidth / 1e9:.1f} GB/s ({sparsecore.get_num_threads()} threads, "
          f"CPU path {sparsecore.cpu_isa()})")
    print("speedup = other's time / sparsecore time; best dense = min(torch, numpy fp32) for fp32, torch for bf16;")
    print("gather = x[:, idx] @ W.T[idx] in torch; frac = bytes of the active runs + x per second / read bandwidth.\n")
    print("| shape | N | dtype | act sparsity | union density | sparsecore ms | vs dense torch | vs best dense | "
          "vs torch gather | frac |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in kernel:
        frac = r["read_bytes"] / (r["act_ms"] / 1e3) / bandwidth
        print(f"| {r['shape']} | {r['n']} | {r['dtype']} | {r['sparsity']:.0%} | {r['union_density']:.0%} | "
              f"{r['act_ms']:.3f} | {r['vs_dense']:.2f}x | {r['vs_best_dense']:.2f}x | {r['vs_gather']:.2f}x | "
              f"{frac:.0%} |")
    if comp:
        print("\nComposition, N = 1, bf16 (speedup vs dense torch bf16):\n")
        print("| shape | method | ms | vs dense torch |")
        print("|---|---|---|---|")
        for r in comp:
            print(f"| {r['shape']} | {r['method']} | {r['ms']:.3f} | {r['vs_dense']:.2f}x |")
    if rs:
        print("\nR-Sparse layer, 4096x4096 bf16, N = 1, budget s = 0.5 (exact channels + rank r):\n")
        print("| method | exact channels | rank | ms | vs dense torch |")
        print("|---|---|---|---|---|")
        for r in rs:
            print(f"| {r['method']} | {r['channels']} | {r['rank']} | {r['ms']:.3f} | {r['vs_dense']:.2f}x |")
    if decode:
        print("\nDecode, Llama-7B-shaped model (2 decoder layers, random weights), TEAL uniform thresholds:\n")
        print("| dtype | activation sparsity | decode tok/s | vs dense |")
        print("|---|---|---|---|")
        for r in decode:
            print(f"| {r['dtype']} | {r['model']} | {r['decode_tok_s']:.2f} | {r['vs_dense']:.2f}x |")


def main(args) -> int:
    shapes = SHAPES[:1] if args.quick else SHAPES
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    bandwidth = measure_read_bandwidth()
    kernel, weights = [], {}
    for out_f, in_f in shapes:
        for dtype in (torch.bfloat16, torch.float32):
            for n in ([1] if args.quick else NS):
                for s in SPARSITIES:
                    kernel.append(kernel_cell(out_f, in_f, n, s, dtype, gen, weights))
                    r = kernel[-1]
                    print(f"{r['shape']} N={n} {r['dtype']} {s:.0%}: act {r['act_ms']:.3f} ms, dense "
                          f"{r['dense_ms']:.3f} ms, gather {r['gather_ms']:.3f} ms", flush=True)
    weights.clear()
    comp = composition_rows(gen, shapes[:2])
    rs = rsparse_rows(gen)
    decode = [] if args.no_decode else decode_rows(2, 8 if args.quick else 32,
                                                  (torch.bfloat16,) if args.quick else (torch.bfloat16, torch.float32))
    print_tables(kernel, comp, rs, decode, bandwidth)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"bandwidth_bytes_per_s": bandwidth, "info": sparsecore.info(), "kernel": kernel,
                       "composition": comp, "rsparse": rs, "decode": decode}, fh, indent=2)
    return 0

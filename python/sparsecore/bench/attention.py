"""Attention benchmark: sparsecore's CPU flash attention (dense, static masks, dynamic
top-k, BLASST, Quest decode) against torch SDPA, FlexAttention (compiled) and a naive
torch implementation, in one run.

Prefill: L in {1k, 4k, 16k}, Llama-3-8B-like heads (32 q / 8 KV, head dim 128) and
SmolLM2-like heads (9 / 3, head dim 64), fp32 and bf16, batch 1. Decode: one query over a
KV cache of 4k/16k/32k, batch 1 and 4. Methods of one cell are timed in alternating blocks
(``time_interleaved``); dynamic selection (top-k estimation, Quest page scoring) is inside
the timed call. Reported: ms, GFLOP/s of the blocks the method computes (4 x D x rows x
keys of every computed block), the fraction of the measured FMA peak (prefill) or of the
read bandwidth (decode, K/V bytes the call reads), and the speedups.
"""

from __future__ import annotations

import json
import math
import time

import torch
import torch.nn.functional as F

import sparsecore
from sparsecore.attention import BlockMask, PageBounds, flash_attention, quest_block_mask, topk_blocks

from ._timing import measure_dense_peak, measure_read_bandwidth, time_interleaved

HEADS = {"32/8 d128": (32, 8, 128), "9/3 d64": (9, 3, 64)}
BLOCK = 64


def _causal_pairs(lq: int, lk: int, window: int | None = None) -> float:
    pos = torch.arange(lq, dtype=torch.float64) + (lk - lq)
    seen = pos + 1 if window is None else torch.clamp(pos + 1, max=window)
    return float(seen.sum())


def _mask_pairs(mask: BlockMask, hq: int) -> float:
    """(row, key) pairs of the listed blocks, causal part only, summed over q heads."""
    dense = mask.to_dense().double()  # [b, h, qb, kb]
    qb, kb = dense.shape[-2:]
    q_rows = torch.full((qb,), float(mask.block_q))
    q_rows[-1] = mask.q_len - (qb - 1) * mask.block_q
    k_cols = torch.full((kb,), float(mask.block_k))
    k_cols[-1] = mask.kv_len - (kb - 1) * mask.block_k
    pairs = (dense * q_rows[:, None] * k_cols[None, :]).sum()
    return float(pairs) * (hq / dense.shape[1]) / dense.shape[0]


def _naive(q, k, v, mask=None):
    g = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)
    s = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if mask is None:
        mask = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool).tril(k.shape[2] - q.shape[2])
    return torch.softmax(s.masked_fill(~mask, -math.inf), -1) @ v


def _window_bool(l: int, window: int, sinks: int) -> torch.Tensor:
    i = torch.arange(l)[:, None]
    j = torch.arange(l)[None, :]
    return (j <= i) & ((i - j < window) | (j < sinks))


def _flex(q, k, v, kind: str, window: int = 0, sinks: int = 0):
    """A compiled FlexAttention call and its compile time, or (None, reason)."""
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    except ImportError as e:
        return None, f"unavailable: {e}"
    l = q.shape[2]

    def mask_mod(b, h, qi, kv):
        ok = qi >= kv
        if kind == "window":
            ok = ok & ((qi - kv < window) | (kv < sinks))
        return ok

    try:
        # A fresh compile per shape: past dynamo's recompile limit flex_attention silently
        # falls back to an unfused eager path that materialises the scores.
        torch._dynamo.reset()
        t0 = time.perf_counter()
        bm = create_block_mask(mask_mod, None, None, l, l, device="cpu")
        fn = torch.compile(flex_attention)
        fn(q, k, v, block_mask=bm, enable_gqa=True)
        compile_s = time.perf_counter() - t0
        return (lambda: fn(q, k, v, block_mask=bm, enable_gqa=True)), compile_s
    except Exception as e:  # FlexAttention on CPU is young: report why instead of failing the run
        return None, f"failed: {type(e).__name__}: {str(e).splitlines()[0][:80]}"


def prefill_cell(name: str, l: int, dtype: torch.dtype, gen: torch.Generator, with_flex: bool) -> list[dict]:
    hq, hkv, d = HEADS[name]
    q = torch.randn(1, hq, l, d, generator=gen).to(dtype)
    k = torch.randn(1, hkv, l, d, generator=gen).to(dtype)
    v = torch.randn(1, hkv, l, d, generator=gen).to(dtype)
    full_pairs = _causal_pairs(l, l) * hq
    rows = []

    def record(mask_name, fns, pairs, skipped=None, extra=None):
        t = time_interleaved(fns, rounds=2 if l >= 16384 else 3)
        base = {"heads": name, "L": l, "dtype": str(dtype).replace("torch.", ""), "mask": mask_name}
        sc = t["sparsecore"]
        row = {**base, "sparsecore_ms": sc * 1e3, "gflops": 4 * d * pairs / sc / 1e9,
               "sdpa_ms": t["sdpa"] * 1e3 if "sdpa" in t else None,
               "naive_ms": t["naive"] * 1e3 if "naive" in t else None,
               "flex_ms": t["flex"] * 1e3 if "flex" in t else None,
               "dense_ms": t["dense"] * 1e3 if "dense" in t else sc * 1e3,
               "blocks_ratio": full_pairs / pairs, "skipped": skipped}
        row.update(extra or {})
        rows.append(row)
        print(f"  {name} L={l} {row['dtype']} {mask_name}: sparsecore {row['sparsecore_ms']:.1f} ms, SDPA "
              f"{row['sdpa_ms'] if row['sdpa_ms'] is not None else float('nan'):.1f} ms", flush=True)

    naive_ok = l <= 4096
    dense = lambda: flash_attention(q, k, v)  # noqa: E731
    fns = {"sparsecore": dense, "sdpa": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                                                                 enable_gqa=True)}
    if naive_ok:
        fns["naive"] = lambda: _naive(q, k, v)
    extra = {}
    if with_flex:
        fn, info = _flex(q, k, v, "causal")
        if fn is not None:
            fns["flex"] = fn
            extra["flex_compile_s"] = info
        else:
            extra["flex_note"] = info
    record("causal", fns, full_pairs / hq * hq, extra=extra)

    for window in (512, 1024):
        if window >= l:
            continue
        boolean = _window_bool(l, window, 4)
        fns = {"sparsecore": lambda w=window: flash_attention(q, k, v, window=w, sinks=4), "dense": dense,
               "sdpa": lambda b=boolean: F.scaled_dot_product_attention(q, k, v, attn_mask=b, enable_gqa=True)}
        extra = {}
        if with_flex:
            fn, info = _flex(q, k, v, "window", window, 4)
            if fn is not None:
                fns["flex"] = fn
                extra["flex_compile_s"] = info
            else:
                extra["flex_note"] = info
        pairs = float(_window_bool(l, window, 4).sum()) * hq if l <= 8192 else _causal_pairs(l, l, window) * hq
        record(f"window {window}+4", fns, pairs, extra=extra)

    # 90% block-sparse: 10% of each q block's causal blocks (the diagonal always).
    qb = -(-l // BLOCK)
    causal = torch.ones(qb, qb, dtype=torch.bool).tril()
    pick = (torch.rand(qb, qb, generator=gen) < 0.1) & causal
    pick |= torch.eye(qb, dtype=torch.bool)
    mask90 = BlockMask.from_dense(pick, q_len=l, kv_len=l, block_q=BLOCK, block_k=BLOCK)
    fns = {"sparsecore": lambda: flash_attention(q, k, v, block_mask=mask90), "dense": dense}
    if l <= 8192:
        el = pick.repeat_interleave(BLOCK, 0)[:l].repeat_interleave(BLOCK, 1)[:, :l] & torch.ones(
            l, l, dtype=torch.bool).tril()
        fns["sdpa"] = lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=el, enable_gqa=True)
    record("90% block-sparse", fns, _mask_pairs(mask90, hq))

    # Dynamic top-k keeping 10% of the causal blocks, selection included.
    sel = topk_blocks(q, k, keep=0.1)
    fns = {"sparsecore": lambda: flash_attention(q, k, v, block_mask=topk_blocks(q, k, keep=0.1)), "dense": dense,
           "sdpa": fns.get("sdpa") or (lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                                                               enable_gqa=True))}
    t0 = time.perf_counter()
    topk_blocks(q, k, keep=0.1)
    select_ms = (time.perf_counter() - t0) * 1e3
    record("top-k 10% (+select)", fns, _mask_pairs(sel, hq), extra={"select_ms": select_ms})

    # BLASST at a = 1 (lambda = 1 / L): random q, k have flat scores, so little is skipped here;
    # the model-level benchmark (attention-quality) measures it on real activations.
    _, stats = flash_attention(q, k, v, blasst_lambda=1.0 / l, return_stats=True)
    fns = {"sparsecore": lambda: flash_attention(q, k, v, blasst_lambda=1.0 / l), "dense": dense}
    record("BLASST a=1", fns, full_pairs * (1 - stats.skipped_fraction), skipped=stats.skipped_fraction)
    return rows


def decode_cell(name: str, kv: int, batch: int, dtype: torch.dtype, gen: torch.Generator) -> list[dict]:
    hq, hkv, d = HEADS[name]
    q = torch.randn(batch, hq, 1, d, generator=gen).to(dtype)
    k = torch.randn(batch, hkv, kv, d, generator=gen).to(dtype)
    v = torch.randn(batch, hkv, kv, d, generator=gen).to(dtype)
    bounds = PageBounds(16).update(k)  # kept up to date by QuestCache as tokens arrive
    kv_bytes = 2 * k.numel() * k.element_size()
    fns = {"sparsecore": lambda: flash_attention(q, k, v),
           "sdpa": lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True)}
    for frac in (4, 8, 16):
        fns[f"quest 1/{frac}"] = lambda f=frac: flash_attention(
            q, k, v, block_mask=quest_block_mask(q, k, bounds, kv // f))
    t = time_interleaved(fns, rounds=3)
    row = {"heads": name, "kv": kv, "batch": batch, "dtype": str(dtype).replace("torch.", ""),
           "kv_bytes": kv_bytes, **{f"{n}_ms": s * 1e3 for n, s in t.items()}}
    print(f"  decode {name} kv={kv} B={batch} {row['dtype']}: sparsecore {row['sparsecore_ms']:.2f} ms, SDPA "
          f"{row['sdpa_ms']:.2f} ms, quest 1/8 {row['quest 1/8_ms']:.2f} ms", flush=True)
    return [row]


def print_tables(prefill: list[dict], decode: list[dict], peak: float, bandwidth: float) -> None:
    print(f"\nmeasured FMA peak (best dense fp32 GEMM) {peak / 1e9:.1f} GFLOP/s; read bandwidth "
          f"{bandwidth / 1e9:.1f} GB/s ({sparsecore.get_num_threads()} threads, CPU path {sparsecore.cpu_isa()})")
    print("speedup = other's time / sparsecore's; dense = sparsecore's own dense causal kernel; SDPA with a boolean "
          "mask for the masked rows; GFLOP/s over the blocks computed; frac = GFLOP/s / FMA peak;")
    print("target for static masks: vs dense >= 0.8 x blocks ratio (dense causal blocks / blocks computed).\n")
    print("| heads | L | dtype | mask | ms | GFLOP/s | frac | vs SDPA | vs dense | blocks ratio | vs Flex | vs naive "
          "| skipped |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in prefill:
        sc = r["sparsecore_ms"]

        def ratio(key):
            return f"{r[key] / sc:.2f}x" if r.get(key) else "-"

        skipped = f"{r['skipped']:.0%}" if r.get("skipped") is not None else "-"
        print(f"| {r['heads']} | {r['L']} | {r['dtype']} | {r['mask']} | {sc:.1f} | {r['gflops']:.0f} | "
              f"{r['gflops'] * 1e9 / peak:.0%} | {ratio('sdpa_ms')} | {ratio('dense_ms')} | "
              f"{r['blocks_ratio']:.1f} | {ratio('flex_ms')} | {ratio('naive_ms')} | {skipped} |")
    flex_notes = {r.get("flex_note") for r in prefill if r.get("flex_note")}
    compile_s = [r["flex_compile_s"] for r in prefill if r.get("flex_compile_s")]
    if compile_s:
        print(f"\nFlexAttention compile time per shape: {min(compile_s):.1f}-{max(compile_s):.1f} s (not in the timings)")
    for note in flex_notes:
        print(f"FlexAttention: {note}")
    print("\n| heads | KV | batch | dtype | dense ms | frac of read BW | vs SDPA | Quest 1/4 | Quest 1/8 | Quest 1/16 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in decode:
        sc = r["sparsecore_ms"]
        frac = r["kv_bytes"] / (sc / 1e3) / bandwidth
        qs = " | ".join(f"{sc / r[f'quest 1/{f}_ms']:.2f}x" for f in (4, 8, 16))
        print(f"| {r['heads']} | {r['kv']} | {r['batch']} | {r['dtype']} | {sc:.2f} | {frac:.0%} | "
              f"{r['sdpa_ms'] / sc:.2f}x | {qs} |")
    print("(Quest columns: speedup over sparsecore's dense decode, page scoring included)")


def main(args) -> int:
    gen = torch.Generator().manual_seed(0)
    lengths = [1024, 4096] if args.quick else [1024, 4096, 16384]
    dtypes = [torch.float32] if args.quick else [torch.float32, torch.bfloat16]
    # The best of three: one disturbed measurement (this VM's neighbours) would inflate every fraction.
    peak = max(measure_dense_peak() for _ in range(3))
    bandwidth = max(measure_read_bandwidth() for _ in range(2))
    prefill, decode = [], []
    print("prefill:")
    for name in HEADS if not args.no_prefill else ():
        for l in lengths:
            for dtype in dtypes:
                if l >= 16384 and name == "32/8 d128" and dtype == torch.bfloat16:
                    continue  # the fp32 row shows the trend; this cell alone takes minutes of SDPA
                prefill += prefill_cell(name, l, dtype, gen, with_flex=not args.no_flex and l <= 4096)
    print("decode:")
    kvs = [4096, 16384] if args.quick else [4096, 16384, 32768]
    for name in HEADS:
        for kv in kvs:
            for batch in ((1,) if args.quick else (1, 4)):
                for dtype in ((torch.bfloat16,) if args.quick else (torch.float32, torch.bfloat16)):
                    decode += decode_cell(name, kv, batch, dtype, gen)
    print_tables(prefill, decode, peak, bandwidth)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"peak_flops": peak, "read_bandwidth": bandwidth, "prefill": prefill, "decode": decode}, f,
                      indent=1)
    return 0

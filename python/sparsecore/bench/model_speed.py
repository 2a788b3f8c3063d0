"""Whole-model decode and prefill: dense vs sparse on the same stack, against the byte floor.

SmolLM2-135M (fp32 and bf16; batch 1, 4 and 16) pruned by SparseGPT at 50% unstructured and
at 2:4, and 50% weights with TEAL 50% activations on top; then a few Llama-7B-shaped
decoder layers (random weights, magnitude) at 50%, 70% and 50% + TEAL 50%. Every model of
one table is measured in the same run, taking turns (``compare_speed``: generate-like
prefill, the same KV cache for all). Every pruned model keeps, per layer, its fastest
measured form at batch 1 (``select_kernels_``); one more SparseGPT 50% model has q/k/v and
gate/up fused and judged as one stacked layer (``fuse_projections=True``). The byte floor is the weight bytes a decode
step reads (dense layers whole, sparse layers their stored arrays, activation-sparse
layers the active fraction; the lm_head once; the KV cache not counted) divided by the
measured read bandwidth; ``step / floor`` says how close a step comes to it.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json

import torch
from torch import nn

# The targets (decode x dense; prefill x dense), printed beside the measurements.
TARGETS = {"SparseGPT 50%": (1.5, 1.0), "SparseGPT 2:4": (1.5, 1.0), "SparseGPT 50% + TEAL 50%": (1.7, None),
           "magnitude 50%": (1.8, None), "magnitude 70%": (2.5, None), "magnitude 50% + TEAL 50%": (2.2, None)}


def decode_step_bytes(model: nn.Module) -> int:
    """Weight bytes one decode step reads (see the module docstring)."""
    from ..activation import ActSparseLinear

    embed = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    seen, total = set(), 0.0
    for m in model.modules():
        if m is embed and (head is None or head.weight is not embed.weight):
            continue  # an untied input embedding is indexed, one row per token
        keep = 1.0
        if isinstance(m, ActSparseLinear) and m.target_sparsity is not None:
            keep = 1.0 - float(m.target_sparsity)
        for t in list(m.parameters(recurse=False)) + list(m.buffers(recurse=False)):
            if t is None or t.data_ptr() in seen:
                continue
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size() * (keep if t.is_floating_point() else 1.0)
    return int(total)


def _smollm2_models(dtype: torch.dtype, pruned: dict, calibration) -> dict:
    import sparsecore
    from sparsecore.models.recipes import load_model

    dense, _ = load_model(dtype=dtype)
    models = {"dense": dense}
    for name, base in pruned.items():
        model = copy.deepcopy(base).to(dtype)
        sparsecore.select_kernels_(model, tokens=1)
        models[name] = model
    fused = copy.deepcopy(pruned["SparseGPT 50%"]).to(dtype)
    sparsecore.select_kernels_(fused, tokens=1, fuse_projections=True)
    models["SparseGPT 50% fused q/k/v, gate/up"] = fused
    teal = copy.deepcopy(pruned["SparseGPT 50%"]).to(dtype)
    sparsecore.select_kernels_(teal, tokens=1)
    sparsecore.sparsify_(teal, sparsecore.TEALConfig(0.5, calibration=calibration[:4], greedy_batches=1,
                                                     progress=False))
    models["SparseGPT 50% + TEAL 50%"] = teal
    return models


def _rows(table: str, models: dict, prompt: torch.Tensor, new_tokens: int, rounds: int, bandwidth: float,
          compiled: bool = False) -> list:
    from sparsecore.models.speed import compare_speed

    speed = compare_speed(models, prompt, new_tokens=new_tokens, rounds=rounds, compiled=compiled)
    dense = speed["dense"]
    rows = []
    for name, sp in speed.items():
        step_ms = 1e3 / sp["decode_tok_s"]
        floor_ms = 1e3 * decode_step_bytes(models[name]) / bandwidth
        target = TARGETS.get(name, (None, None)) if prompt.shape[0] == 1 else (None, None)
        rows.append({"table": table, "model": name, "batch": prompt.shape[0],
                     "decode_tok_s": sp["decode_tok_s"] * prompt.shape[0], "prefill_tok_s": sp["prefill_tok_s"],
                     "decode_x": sp["decode_tok_s"] / dense["decode_tok_s"],
                     "prefill_x": sp["prefill_tok_s"] / dense["prefill_tok_s"],
                     "step_ms": step_ms, "floor_ms": floor_ms, "decode_target": target[0],
                     "prefill_target": target[1]})
        print(f"  {table} {name} batch {prompt.shape[0]}: decode x{rows[-1]['decode_x']:.2f} prefill "
              f"x{rows[-1]['prefill_x']:.2f} step {step_ms:.1f} ms (floor {floor_ms:.1f})", flush=True)
    return rows


def smollm2_rows(quick: bool, bandwidth: float, compiled: bool = False) -> list[dict]:
    import sparsecore
    from sparsecore.models.recipes import calibration_batches, load_model, token_stream

    fp32, tok = load_model()
    calibration = calibration_batches(tok, 8, 256)
    pruned = {}
    for name, pattern in (("SparseGPT 50%", "unstructured"), ("SparseGPT 2:4", "2:4")):
        model = copy.deepcopy(fp32)
        sparsecore.sparsify_(model, sparsecore.SparseGPTConfig(sparsity=0.5, pattern=pattern, calibration=calibration,
                                                               fallback_to_dense=False, progress=False))
        pruned[name] = model
    del fp32
    eval_ids = token_stream(tok, "eval", 16 * 128)
    new_tokens, rounds = (32, 2) if quick else (128, 3)
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        models = _smollm2_models(dtype, pruned, calibration)
        label = f"SmolLM2-135M {str(dtype).replace('torch.', '')}{' compiled' if compiled else ''}"
        for batch in ((1, 4) if quick else (1, 4, 16)):
            if batch > 1 and dtype != torch.float32 and quick:
                continue
            prompt = eval_ids[: batch * 128].reshape(batch, 128)
            rows += _rows(label, models, prompt, new_tokens if batch == 1 else 16, rounds, bandwidth, compiled)
        del models
        gc.collect()
    return rows


def llama7b_rows(quick: bool, bandwidth: float) -> list[dict]:
    import sparsecore
    from sparsecore.demo.llama7b import _llama7b_shaped

    dense = _llama7b_shaped(2)
    gen = torch.Generator().manual_seed(0)
    calibration = [{"input_ids": torch.randint(0, 1024, (1, 64), generator=gen), "use_cache": False}
                   for _ in range(2)]
    models = {"dense": dense}
    for s in (0.5, 0.7):
        model = copy.deepcopy(dense)
        sparsecore.sparsify_(model, sparsecore.MagnitudeConfig(sparsity=s))
        models[f"magnitude {s:.0%}"] = model
    both = copy.deepcopy(models["magnitude 50%"])
    sparsecore.sparsify_(both, sparsecore.TEALConfig(0.5, calibration=calibration, allocation="uniform", progress=False))
    models["magnitude 50% + TEAL 50%"] = both
    prompt = torch.randint(0, 1024, (1, 128), generator=gen)
    return _rows("Llama-7B-shaped x2 fp32", models, prompt, 16 if quick else 32, 2 if quick else 3, bandwidth)


def table(rows: list[dict], bandwidth: float) -> str:
    lines = [f"read bandwidth {bandwidth / 1e9:.1f} GB/s (floor = weight bytes per step / bandwidth)", "",
             "| model | run | batch | decode tok/s | decode x | target | prefill x | target | step ms | floor ms "
             "| step / floor |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        def target(value, goal):
            return "-" if goal is None else f">= {goal}x {'met' if value >= goal else 'NOT met'}"
        lines.append(f"| {r['table']} | {r['model']} | {r['batch']} | {r['decode_tok_s']:.1f} | {r['decode_x']:.2f}x | "
                     f"{target(r['decode_x'], r['decode_target'])} | {r['prefill_x']:.2f}x | "
                     f"{target(r['prefill_x'], r['prefill_target'])} | {r['step_ms']:.1f} | {r['floor_ms']:.1f} | "
                     f"{r['step_ms'] / r['floor_ms']:.2f} |")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    from ._timing import measure_read_bandwidth

    bandwidth = measure_read_bandwidth()
    rows = smollm2_rows(args.quick, bandwidth, compiled=args.compile)
    if not args.no_llama:
        rows += llama7b_rows(args.quick, bandwidth)
    if args.compile:
        print("\ndecode steps compiled (torch.compile of each model's forward over a StaticCache, dense alike)")
    print(f"\nwhole-model speed, {torch.get_num_threads()} threads, 128-token prompts, greedy decode "
          f"({'32' if args.quick else '128'} steps at batch 1, 16 at larger batches); decode tok/s counts every "
          f"sequence of the batch\n")
    print(table(rows, bandwidth))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"bandwidth": bandwidth, "rows": rows}, fh, indent=1)
    return 0

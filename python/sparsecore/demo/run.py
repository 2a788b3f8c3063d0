"""Runs the demo: every (method, pattern) on SmolLM2, then the Llama-7B-shaped decode table."""

from __future__ import annotations

import copy
import gc
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field

import torch

from ..pruning import Pattern


@dataclass
class DemoSettings:
    methods: list[str]
    patterns: list[Pattern]
    allocation: str = "uniform"
    calib_seqs: int = 32
    calib_len: int = 512
    eval_tokens: int = 8192
    window: int = 1024
    prompt_tokens: int = 128
    decode_tokens: int = 32
    llama7b_layers: int = 2
    activation: str = "teal"        # activation sparsity row(s): "teal", "wina", "rsparse" or "none"
    activation_sparsity: float = 0.5
    long_context: int = 4096        # tokens of the long-context attention section (0 skips it)
    quick: bool = False
    out_dir: str = "demo-report"
    rows: list[dict] = field(default_factory=list)


def _file_mb(model) -> float:
    from ..serialization import save_sparse

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.safetensors")
        save_sparse(model, path)
        return os.path.getsize(path) / 1e6


def _linear_sparsity(model) -> float:
    from ..nn import SparseLinear

    total = kept = 0
    for m in model.modules():
        if isinstance(m, SparseLinear):
            total += m.in_features * m.out_features
            kept += m.weight.nnz
    return 1.0 - kept / total if total else 0.0


def _smollm2_rows(s: DemoSettings) -> list[dict]:
    import sparsecore
    from ..models import load_smollm2, perplexity
    from ..models.recipes import calibration_batches, make_config, token_stream
    from ..models.speed import compare_speed

    dense, tok = load_smollm2()
    eval_ids = token_stream(tok, "eval", s.eval_tokens)
    prompt = eval_ids[: s.prompt_tokens].unsqueeze(0)
    calibration = calibration_batches(tok, s.calib_seqs, s.calib_len)
    print(f"SmolLM2-135M fp32; {eval_ids.numel()} held-out tokens; calibration {s.calib_seqs} x {s.calib_len} tokens")
    dense_ppl = perplexity(dense, eval_ids, window=s.window, max_tokens=s.eval_tokens)
    dense_mb = _file_mb(dense)
    rows = [{"model": "SmolLM2-135M", "method": "dense", "pattern": "-", "sparsity": 0.0, "ppl": dense_ppl,
             "file_mb": dense_mb, "prune_s": 0.0, "sparse_layers": "-", "speed": None}]
    profiled = _profiled_run(s)
    print(f"  dense: perplexity {dense_ppl:.2f}, {dense_mb:.0f} MB")
    for pattern in s.patterns:
        for method in s.methods:
            model = copy.deepcopy(dense)
            allocation = s.allocation if pattern.nm is None else "uniform"
            if method == "magnitude":
                allocation = "uniform"
            config = make_config(method, pattern, calibration=calibration, allocation=allocation,
                                 fallback_to_dense=False, progress=False)
            t0 = time.perf_counter()
            sparsecore.sparsify_(model, config)
            prune_s = time.perf_counter() - t0
            file_mb = _file_mb(model)  # every pruned layer compressed
            sparsity = _linear_sparsity(model)
            # Run each layer on the faster kernel for decode on this machine.
            chosen = sparsecore.select_kernels_(model, tokens=1)
            n_sparse = sum(r.name.count("+") + 1 for r in chosen.layers if r.format != "dense (fallback)")
            n_layers = sum(r.name.count("+") + 1 for r in chosen.layers)
            ppl = perplexity(model, eval_ids, window=s.window, max_tokens=s.eval_tokens)
            speed = compare_speed({"dense": dense, "sparse": model}, prompt, new_tokens=s.decode_tokens)
            row = {"model": "SmolLM2-135M", "method": method, "pattern": pattern.describe(), "sparsity": sparsity,
                   "ppl": ppl, "file_mb": file_mb, "prune_s": prune_s,
                   "sparse_layers": f"{n_sparse}/{n_layers}", "speed": speed,
                   "layer_ms_dense": sum(r.dense_ms for r in chosen.layers),
                   "layer_ms_chosen": sum(min(r.dense_ms, r.sparse_ms) if r.format.startswith("dense")
                                          else r.sparse_ms for r in chosen.layers)}
            if (method, pattern) == profiled:
                row["profile"] = _decode_profile(dense, model, prompt)
            rows.append(row)
            print(f"  {method:<9} {pattern.describe():<16} perplexity {ppl:8.2f}  {file_mb:5.0f} MB  "
                  f"decode x{speed['sparse']['decode_tok_s'] / speed['dense']['decode_tok_s']:.2f}  "
                  f"({n_sparse}/{n_layers} layers sparse, pruned in {prune_s:.0f} s)")
            del model
            gc.collect()
    if s.activation != "none":
        rows.append(_activation_row(s, dense, calibration, eval_ids, prompt))
    return rows


def _profiled_run(s: DemoSettings) -> tuple[str, Pattern]:
    """The (method, pattern) whose decode step the report breaks down: SparseGPT (else the
    last method) at 50% unstructured (else the first pattern)."""
    method = "sparsegpt" if "sparsegpt" in s.methods else s.methods[-1]
    fifty = [p for p in s.patterns if p.nm is None and p.block is None and abs(p.sparsity - 0.5) < 1e-9]
    return method, (fifty or s.patterns)[0]


def _decode_profile(dense, model, prompt) -> dict:
    """Per-family ms of a decode step, dense and sparse (models/profile.py), for the report."""
    from ..models.profile import profile_model

    return {name: profile_model(m, prompt, decode_steps=8, prefill_repeats=1, top_ops=0)
            for name, m in (("dense", dense), ("sparse", model))}


def _activation_row(s: DemoSettings, dense, calibration, eval_ids, prompt) -> dict:
    """Activation sparsity on the dense model (TEAL's greedy allocation by default): thresholds
    calibrated on the calibration text; perplexity with every token sparsified (as decode
    sees it), speed with TEAL's prefill policy."""
    import sparsecore
    from ..activation import PrefillPolicy, RSparseConfig, TEALConfig, WINAConfig
    from ..models import perplexity
    from ..models.speed import compare_speed

    model = copy.deepcopy(dense)
    batches = calibration[: max(1, min(len(calibration), 16))]
    if s.activation == "rsparse":
        config = RSparseConfig(s.activation_sparsity, calibration=batches, prefill=PrefillPolicy("sparse"),
                               progress=False)
    else:
        cls = TEALConfig if s.activation == "teal" else WINAConfig
        config = cls(s.activation_sparsity, calibration=batches, greedy_batches=1, prefill=PrefillPolicy("sparse"),
                     progress=False)
    t0 = time.perf_counter()
    report = sparsecore.sparsify_(model, config)
    seconds = time.perf_counter() - t0
    ppl = perplexity(model, eval_ids, window=s.window, max_tokens=s.eval_tokens)
    for m in model.modules():
        if isinstance(m, sparsecore.ActSparseLinear):
            m.prefill = PrefillPolicy()  # speed as deployed: TEAL's dense-then-sparse prompt policy
    speed = compare_speed({"dense": dense, "sparse": model}, prompt, new_tokens=s.decode_tokens)
    allocation = "search" if s.activation == "rsparse" else "greedy"
    row = {"model": "SmolLM2-135M", "method": s.activation,
           "pattern": f"{report.achieved:.0%} of activations ({allocation})", "sparsity": 0.0, "ppl": ppl,
           "file_mb": _file_mb(model), "prune_s": seconds, "sparse_layers": f"{len(report.layers)}/{len(report.layers)}",
           "speed": speed}
    print(f"  {s.activation:<9} {row['pattern']:<16} perplexity {ppl:8.2f}  decode "
          f"x{speed['sparse']['decode_tok_s'] / speed['dense']['decode_tok_s']:.2f} (calibrated in {seconds:.0f} s)")
    del model
    gc.collect()
    return row


def run_demo(s: DemoSettings) -> dict:
    from .llama7b import llama7b_rows
    from .report import write_report

    t0 = time.perf_counter()
    os.makedirs(s.out_dir, exist_ok=True)
    import sparsecore
    results = {"settings": {k: v for k, v in asdict(s).items() if k not in ("rows", "patterns")},
               "patterns": [p.describe() for p in s.patterns],
               "machine": {"threads": torch.get_num_threads(), "cpu_isa": sparsecore.cpu_isa()},
               "smollm2": _smollm2_rows(s)}
    results["llama7b"] = llama7b_rows(s.llama7b_layers, s.prompt_tokens, s.decode_tokens) if s.llama7b_layers else []
    if s.long_context:
        from .long_context import long_context_rows
        results["long_context"] = long_context_rows(s.long_context, s.quick, s.decode_tokens)
    results["seconds"] = time.perf_counter() - t0
    with open(os.path.join(s.out_dir, "results.json"), "w", encoding="utf-8") as fh:
        json.dump(results, fh, indent=2)
    text = write_report(results, s.out_dir)
    print()
    print(text)
    return results

"""``python -m sparsecore.bench activation-quality``: perplexity of SmolLM2-135M on held-out
Wikipedia with every linear's input sparsified (all tokens, as in decode) by TEAL, WINA and
R-Sparse at several model-wide sparsities, plus decode tokens/s of TEAL on this machine.
About 35 minutes on 2 cores.

Calibration and evaluation text are disjoint articles (``models.real_data``). TEAL and WINA
use TEAL's greedy allocation (and, for reference, the uniform one); R-Sparse its
evolutionary search over per-block (s, alpha). Sparsity is parameter-weighted over the
block linears; lm_head (tied to the embedding) stays dense.
"""

from __future__ import annotations

import json
import time

import torch

import sparsecore
from sparsecore.activation import ActivationCalibration, PrefillPolicy, RSparseConfig, install, restore


def _ppl(model, ids) -> float:
    from ..models.perplexity import perplexity

    return perplexity(model, ids, max_tokens=None)


def main(args) -> int:
    from ..models.real_data import load_smollm2
    from ..models.recipes import calibration_batches, token_stream
    from ..models.speed import compare_speed

    targets = [float(t) for t in args.targets.split(",")]
    model, tok = load_smollm2()
    eval_ids = token_stream(tok, "eval", args.eval_tokens)
    calibration = calibration_batches(tok, args.calib_seqs, args.calib_len)
    sparse_all = PrefillPolicy("sparse")
    rows = [{"method": "dense", "allocation": "-", "target": 0.0, "achieved": 0.0, "ppl": _ppl(model, eval_ids)}]
    print(f"dense perplexity {rows[0]['ppl']:.2f} on {eval_ids.numel()} held-out tokens", flush=True)
    calib = {"teal": ActivationCalibration(model, calibration, weighted=False),
             "wina": ActivationCalibration(model, calibration, weighted=True)}
    greedy = {}
    for method in ("teal", "wina"):
        for allocation in ("uniform", "greedy"):
            t0 = time.perf_counter()
            levels = calib[method].levels(targets, allocation, 0.05, batches=1)
            if allocation == "greedy":
                greedy[method] = levels
            for t in targets:
                modules, report = calib[method].build(levels[t], method, sparse_all, t)
                originals = install(model, modules)
                rows.append({"method": method, "allocation": allocation, "target": t, "achieved": report.achieved,
                             "ppl": _ppl(model, eval_ids), "seconds": time.perf_counter() - t0})
                restore(model, originals)
                print(f"{method} {allocation} {t:.0%}: perplexity {rows[-1]['ppl']:.2f}", flush=True)
    for t in targets:
        t0 = time.perf_counter()
        config = RSparseConfig(t, calibration=calibration, generations=args.generations, population=args.population,
                               prefill=sparse_all)
        # The search starts from uniform splits and from WINA's greedy allocation (same scores).
        modules, report = calib["wina"].rsparse(config, initial_levels=greedy["wina"][t])
        originals = install(model, modules)
        ranks = [r.rank for r in report.layers]
        rows.append({"method": "rsparse", "allocation": "search", "target": t, "achieved": report.achieved,
                     "ppl": _ppl(model, eval_ids), "seconds": time.perf_counter() - t0,
                     "search_history": report.search_history, "mean_rank": sum(ranks) / len(ranks),
                     "mean_alpha": sum(r.alpha for r in report.layers) / len(report.layers)})
        restore(model, originals)
        print(f"rsparse {t:.0%}: perplexity {rows[-1]['ppl']:.2f} (search losses {report.search_history})",
              flush=True)

    # Decode speed on SmolLM2 itself: small layers (576 wide), so per-call overheads weigh more.
    modules, _ = calib["teal"].build(greedy["teal"][0.5] if 0.5 in targets else
                                     calib["teal"].levels([0.5], "uniform")[0.5], "teal", PrefillPolicy(), 0.5)
    sparse_model = model
    import copy

    dense_model = copy.deepcopy(model)
    install(sparse_model, modules)
    prompt = eval_ids[:64].unsqueeze(0)
    speed = compare_speed({"dense": dense_model, "teal 50%": sparse_model}, prompt, new_tokens=32)

    print("\nSmolLM2-135M fp32, held-out Wikipedia perplexity, every token sparsified "
          f"({eval_ids.numel()} tokens, windows of 1024; calibration {args.calib_seqs} x {args.calib_len}):\n")
    header = " | ".join(f"{t:.0%}" for t in targets)
    print(f"| method | allocation | {header} |")
    print("|---|---|" + "---|" * len(targets))
    print(f"| dense | - | " + " | ".join(f"{rows[0]['ppl']:.2f}" for _ in targets) + " |")
    for method, allocation in (("teal", "uniform"), ("teal", "greedy"), ("wina", "uniform"), ("wina", "greedy"),
                               ("rsparse", "search")):
        cells = [r for r in rows if r["method"] == method and r["allocation"] == allocation]
        print(f"| {method} | {allocation} | " + " | ".join(f"{r['ppl']:.2f}" for r in cells) + " |")
    print(f"\nSmolLM2 decode (fp32, batch 1, 64-token prompt): dense {speed['dense']['decode_tok_s']:.1f} tok/s, "
          f"TEAL 50% {speed['teal 50%']['decode_tok_s']:.1f} tok/s "
          f"(x{speed['teal 50%']['decode_tok_s'] / speed['dense']['decode_tok_s']:.2f})")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"rows": rows, "decode": speed, "info": sparsecore.info()}, fh, indent=2)
    return 0

"""``sparsecore activate``: add activation sparsity (TEAL, WINA or R-Sparse) to a model, dense or
already pruned (then both sparsities compose), and save it with its thresholds and recipe."""

from __future__ import annotations

import argparse
import time

from .common import DTYPES, add_calibration_arguments, add_model_arguments, check_positive

METHODS = ("teal", "wina", "rsparse")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--method", choices=METHODS, default="teal")
    p.add_argument("--sparsity", type=float, default=0.5,
                   help="model-wide activation sparsity, parameter-weighted (default 0.5)")
    p.add_argument("--allocation", choices=["greedy", "uniform"], default="greedy",
                   help="TEAL/WINA: TEAL's block-wise greedy allocation or uniform (default greedy)")
    p.add_argument("--prefill", choices=["tail", "dense", "sparse"], default="tail",
                   help="prompts: dense first half then sparse (tail, TEAL's choice), all dense, or all sparse")
    p.add_argument("--generations", type=int, default=4, help="R-Sparse search generations (default 4)")
    p.add_argument("--population", type=int, default=8, help="R-Sparse search population (default 8)")
    p.add_argument("--seed", type=int, default=0, help="R-Sparse search seed (default 0)")
    add_calibration_arguments(p, 16, 512)
    p.add_argument("--output", required=True, help="directory to write (must be new or empty, or --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    p.set_defaults(fn=run)


def _config(args, calibration):
    from ..activation import PrefillPolicy, RSparseConfig, TEALConfig, WINAConfig

    prefill = PrefillPolicy(args.prefill)
    if args.method == "rsparse":
        return RSparseConfig(args.sparsity, calibration=calibration, generations=args.generations,
                             population=args.population, seed=args.seed, prefill=prefill)
    cls = TEALConfig if args.method == "teal" else WINAConfig
    return cls(args.sparsity, calibration=calibration, allocation=args.allocation, prefill=prefill)


def run(args) -> int:
    import sparsecore
    from ..models.pruned_dir import check_output_dir, is_pruned_dir, read_recipe, save_pruned
    from ..models.recipes import calibration_batches, load_model

    # Every argument is checked before the (slow) model load and before anything is written.
    check_output_dir(args.output, args.overwrite)
    check_positive(calib_seqs=args.calib_seqs, calib_len=args.calib_len, population=args.population)
    _config(args, [None]).validate()
    model, tok = load_model(args.model, DTYPES[args.dtype])
    base = read_recipe(args.model) if is_pruned_dir(args.model) else None
    calibration = calibration_batches(tok, args.calib_seqs, args.calib_len)
    t0 = time.perf_counter()
    report = sparsecore.sparsify_(model, _config(args, calibration))
    seconds = time.perf_counter() - t0
    recipe = {"activation": {"method": args.method, "sparsity": args.sparsity, "allocation": args.allocation,
                             "prefill": args.prefill, "calibration": f"{args.calib_seqs} x {args.calib_len} tokens",
                             "calibrated_sparsity": round(report.achieved, 4), "seconds": round(seconds, 1),
                             "thresholds": {r.name: r.threshold for r in report.layers}},
              "source_model": args.model}
    if base is not None:
        recipe["pruning"] = base
    save_pruned(model, tok, args.output, recipe, overwrite=args.overwrite)
    print(f"{args.method}: {len(report.layers)} linear layers at {report.achieved:.1%} calibrated activation "
          f"sparsity in {seconds:.0f} s; wrote {args.output}")
    return 0

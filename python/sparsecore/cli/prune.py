"""``sparsecore prune``: prune a model with magnitude, Wanda or SparseGPT and save it compressed."""

from __future__ import annotations

import argparse
import time

from .common import DTYPES, add_calibration_arguments, add_model_arguments, check_positive


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--method", choices=["magnitude", "wanda", "sparsegpt"], default="wanda")
    p.add_argument("--pattern", default="unstructured",
                   help="'unstructured' (with --sparsity), '2:4', '4:8', any 'N:M', or 'block16' (default unstructured)")
    p.add_argument("--sparsity", type=float, default=0.5, help="fraction pruned for unstructured/block (default 0.5)")
    p.add_argument("--allocation", choices=["uniform", "owl"], default="uniform",
                   help="per-layer sparsity: uniform, or OWL's outlier-weighted allocation")
    add_calibration_arguments(p, 32, 512)
    p.add_argument("--lm-head", action="store_true",
                   help="also prune the output embedding (lm_head) with the same method and pattern; a head tied to "
                        "the input embedding is untied (the embedding stays dense; the file holds both)")
    p.add_argument("--output", required=True, help="directory to write (must be new or empty, or --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    p.set_defaults(fn=run)


def run(args) -> int:
    import sparsecore
    from ..models.pruned_dir import check_output_dir, save_pruned
    from ..models.recipes import calibration_batches, load_model, make_config
    from ..pruning import Pattern

    # Every argument is checked before the (slow) model load and before anything is written.
    check_output_dir(args.output, args.overwrite)
    if not 0.0 <= args.sparsity < 1.0:  # also when an N:M pattern makes it unused: a typo is a typo
        raise ValueError(f"--sparsity must be in [0, 1), got {args.sparsity}")
    pattern = Pattern.parse(args.pattern, sparsity=args.sparsity)
    check_positive(calib_seqs=args.calib_seqs, calib_len=args.calib_len)
    make_config(args.method, pattern, allocation=args.allocation, lm_head=args.lm_head)
    model, tok = load_model(args.model, DTYPES[args.dtype], detect_sparse=False)
    calibration = None
    if args.method != "magnitude" or args.allocation != "uniform":
        calibration = calibration_batches(tok, args.calib_seqs, args.calib_len)
    config = make_config(args.method, pattern, calibration=calibration, allocation=args.allocation,
                         fallback_to_dense=False, lm_head=args.lm_head)
    t0 = time.perf_counter()
    report = sparsecore.sparsify_(model, config)
    seconds = time.perf_counter() - t0
    mean = sum(r.sparsity * r.shape[0] * r.shape[1] for r in report.layers) / \
        max(1, sum(r.shape[0] * r.shape[1] for r in report.layers))
    recipe = {"method": args.method, "pattern": pattern.describe(), "allocation": args.allocation,
              "calibration": None if calibration is None else f"{args.calib_seqs} x {args.calib_len} tokens",
              "source_model": args.model, "prune_seconds": round(seconds, 1), "linear_sparsity": round(mean, 4),
              "layers": {r.name: round(r.sparsity, 4) for r in report.layers}, "notes": report.notes}
    save_pruned(model, tok, args.output, recipe, overwrite=args.overwrite)
    print(f"pruned {len(report.layers)} linear layers with {args.method} ({pattern.describe()}, {args.allocation}) "
          f"in {seconds:.0f} s; mean sparsity {mean:.1%}; wrote {args.output}")
    for note in report.notes:
        print(f"note: {note}")
    return 0

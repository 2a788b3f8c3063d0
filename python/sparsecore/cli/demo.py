"""``sparsecore demo``: the end-to-end job on the real SmolLM2 and real Wikipedia text.

Prunes SmolLM2-135M with each method at each pattern, measures held-out perplexity, size on
disk and prefill/decode tokens/s against the dense model (in the same run, taking turns),
times decode on a few Llama-7B-shaped layers, and writes ``report.md``, ``results.json``
and ``tradeoff.png`` to the output directory.
"""

from __future__ import annotations

import argparse

from .common import add_calibration_arguments, add_eval_arguments, check_positive, set_threads


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--methods", default="magnitude,wanda,sparsegpt", help="comma-separated (default all three)")
    p.add_argument("--patterns", default=None,
                   help="comma-separated, e.g. '50%%,4:8,2:4' (default: the sweep '30%%,50%%,70%%,2:4'; "
                        "--quick '50%%,70%%,2:4')")
    p.add_argument("--allocation", choices=["uniform", "owl"], default="uniform")
    add_calibration_arguments(p, 32, 512)
    add_eval_arguments(p, 8192)
    p.add_argument("--llama7b-layers", type=int, default=2,
                   help="Llama-7B-shaped decoder layers for the decode-speed table (0 skips it; default 2)")
    p.add_argument("--activation", choices=["teal", "wina", "rsparse", "none"], default="teal",
                   help="also run activation sparsity on the dense model (default teal, greedy allocation)")
    p.add_argument("--activation-sparsity", type=float, default=0.5, help="its model-wide target (default 0.5)")
    p.add_argument("--long-context", type=int, default=4096,
                   help="context length of the sparse-attention section (default 4096, --quick 2048; 0 skips it)")
    p.add_argument("--out-dir", default="demo-report", help="where report.md, results.json, tradeoff.png go")
    p.add_argument("--quick", action="store_true", help="small slices: 8 x 256 calibration, 2048 eval tokens")
    p.set_defaults(fn=run)


def run(args) -> int:
    from ..demo import DemoSettings, run_demo
    from ..pruning import METHODS, Pattern

    if args.patterns is None:
        args.patterns = "50%,70%,2:4" if args.quick else "30%,50%,70%,2:4"
    if args.quick:
        args.calib_seqs, args.calib_len = min(args.calib_seqs, 8), min(args.calib_len, 256)
        args.eval_tokens, args.decode_tokens = min(args.eval_tokens, 2048), min(args.decode_tokens, 16)
        args.long_context = min(args.long_context, 2048)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    patterns = [Pattern.parse(p.strip()) for p in args.patterns.split(",") if p.strip()]
    if not methods or not patterns:
        raise ValueError("need at least one method and one pattern")
    check_positive(calib_seqs=args.calib_seqs, calib_len=args.calib_len, eval_tokens=args.eval_tokens,
                   window=args.window, prompt_tokens=args.prompt_tokens, decode_tokens=args.decode_tokens)
    if not 0.0 <= args.activation_sparsity < 1.0:
        raise ValueError(f"--activation-sparsity must be in [0, 1), got {args.activation_sparsity}")
    if args.long_context < 0 or 0 < args.long_context < 1024 or args.long_context > 8192:
        raise ValueError(f"--long-context must be 0 (skip) or 1024..8192 (SmolLM2's context), got {args.long_context}")
    if args.llama7b_layers < 0:
        raise ValueError(f"--llama7b-layers must be >= 0, got {args.llama7b_layers}")
    set_threads(args.threads)
    settings = DemoSettings(methods=methods, patterns=patterns, allocation=args.allocation,
                            calib_seqs=args.calib_seqs, calib_len=args.calib_len, eval_tokens=args.eval_tokens,
                            window=args.window, prompt_tokens=args.prompt_tokens, decode_tokens=args.decode_tokens,
                            llama7b_layers=args.llama7b_layers, activation=args.activation,
                            activation_sparsity=args.activation_sparsity, long_context=args.long_context,
                            quick=args.quick, out_dir=args.out_dir)
    run_demo(settings)
    return 0

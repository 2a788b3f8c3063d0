"""The ``sparsecore`` command line: info, selftest, bench, prune, activate, eval, export, demo."""

from __future__ import annotations

import argparse
import json
import sys


def _cmd_info(args) -> int:
    from ..runtime import info

    d = info()
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    print(f"sparsecore {d['version']}")
    print(f"  CPU ISA paths compiled : {', '.join(d['cpu_isa_compiled'])}")
    print(f"  runnable on this CPU   : {', '.join(d['cpu_isa_available'])}")
    print(f"  selected               : {d['cpu_isa_selected']}  (SPARSECORE_CPU_ISA overrides)")
    print(f"  CPU threads            : {d['cpu_threads']}  (SPARSECORE_NUM_THREADS overrides)")
    if d["cuda_compiled"]:
        print(f"  CUDA kernels           : compiled for {d['cuda_archs']}")
    else:
        print("  CUDA kernels           : not compiled (CPU-only build)")
    print(f"  GPUs visible           : {d['cuda_devices']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import activate, demo, evaluate, export, prune

    parser = argparse.ArgumentParser(prog="sparsecore", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_info = sub.add_parser("info", help="build and hardware information")
    p_info.add_argument("--json", action="store_true")
    p_info.set_defaults(fn=_cmd_info)
    p_self = sub.add_parser("selftest", help="check every compiled kernel against the reference")
    p_self.add_argument("--bench", action="store_true", help="also time the GPU kernels")
    p_self.set_defaults(fn=lambda a: __import__("sparsecore.selftest", fromlist=["run"]).run(bench=a.bench))
    p_bench = sub.add_parser("bench", help="benchmarks (python -m sparsecore.bench --help)")
    p_bench.add_argument("rest", nargs=argparse.REMAINDER)
    p_bench.set_defaults(fn=lambda a: __import__("sparsecore.bench.__main__", fromlist=["main"]).main(a.rest))
    prune.add_arguments(sub.add_parser("prune", help="prune a model and save it compressed"))
    activate.add_arguments(sub.add_parser("activate", help="add activation sparsity (TEAL, WINA, R-Sparse) and save"))
    evaluate.add_arguments(sub.add_parser("eval", help="perplexity and prefill/decode tokens/s of a model"))
    export.add_arguments(sub.add_parser("export", help="write a model as a plain HF checkpoint (transformers, vLLM)"))
    demo.add_arguments(sub.add_parser("demo", help="end-to-end: prune SmolLM2 several ways, compare, report"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args) or 0)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        # Bad input gets one clear line, not a traceback.
        print(f"sparsecore {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

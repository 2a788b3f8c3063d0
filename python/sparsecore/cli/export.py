"""``sparsecore export``: write a model as a plain HF checkpoint that transformers, vLLM and
llm-compressor read (see :mod:`sparsecore.models.interop` for why not a sparse format)."""

from __future__ import annotations

import argparse

from .common import DTYPES, add_model_arguments

_WHY_NOT_COMPRESSED = (
    "compressed-tensors removed its sparse formats (sparse-bitmask, sparse-24-bitmask) in 0.15, and "
    "transformers >= 5 and vLLM no longer load them; '--format hf' writes what they read today: the pruned "
    "weights, zeros included, as an ordinary checkpoint (what llm-compressor 0.14 writes for a pruned model)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--format", choices=["hf", "compressed-tensors"], default="hf",
                   help="hf: dense safetensors of the pruned weights + config + tokenizer (default); "
                        "compressed-tensors: refused, with the reason")
    p.add_argument("--save-dtype", choices=sorted(DTYPES), default=None,
                   help="cast the written weights (default: the model's dtype)")
    p.add_argument("--output", required=True, help="directory to write (must be new or empty, or --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace a directory sparsecore wrote before")
    p.set_defaults(fn=run)


def run(args) -> int:
    from ..models.interop import export_pretrained
    from ..models.pruned_dir import check_output_dir
    from ..models.recipes import load_model

    if args.format == "compressed-tensors":
        raise ValueError(_WHY_NOT_COMPRESSED)
    check_output_dir(args.output, args.overwrite)
    model, tok = load_model(args.model, DTYPES[args.dtype])
    dtype = DTYPES[args.save_dtype] if args.save_dtype else None
    size = export_pretrained(model, tok, args.output, dtype=dtype, overwrite=args.overwrite)
    print(f"wrote {args.output}: {size / 1e6:.1f} MB (dense {args.save_dtype or args.dtype} weights); "
          f"load it with transformers' from_pretrained, 'vllm serve {args.output}', or sparsecore.load_pretrained "
          f"(which runs its sparse layers on the sparsecore kernels)")
    return 0

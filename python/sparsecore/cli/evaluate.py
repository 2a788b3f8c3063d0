"""``sparsecore eval``: perplexity on held-out Wikipedia text and prefill/decode tokens/s."""

from __future__ import annotations

import argparse

from .common import DTYPES, add_eval_arguments, add_model_arguments, check_positive, set_threads


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    add_eval_arguments(p, 8192)
    p.add_argument("--no-speed", action="store_true", help="perplexity only")
    from ..attention.configs import SPEC_HELP
    p.add_argument("--attention", metavar="SPEC", help=f"run attention on sparsecore's kernel with this recipe: "
                   f"{SPEC_HELP}. Quest changes decoding only (its perplexity is the dense one)")
    p.set_defaults(fn=run)


def run(args) -> int:
    import sparsecore
    from ..models import perplexity
    from ..models.recipes import load_model, token_stream
    from ..models.speed import compare_speed

    check_positive(eval_tokens=args.eval_tokens, window=args.window, prompt_tokens=args.prompt_tokens,
                   decode_tokens=args.decode_tokens)
    attention = None
    if args.attention is not None:
        from ..attention.configs import parse_spec
        try:
            attention = parse_spec(args.attention)
        except ValueError as e:
            raise SystemExit(f"error: --attention: {e}") from None
    set_threads(args.threads)
    model, tok = load_model(args.model, DTYPES[args.dtype])
    if attention is not None:
        sparsecore.sparsify_attention_(model, *attention)
        print(f"attention: sparsecore kernel, recipe {args.attention}")
    n_sparse = sum(isinstance(m, sparsecore.nn.SparseLinear) for m in model.modules())
    if n_sparse:
        # Stored compressed; run each layer on whichever kernel is faster here at decode size.
        report = sparsecore.select_kernels_(model, tokens=1)
        print(str(report).splitlines()[-1])
    ids = token_stream(tok, "eval", args.eval_tokens)
    ppl = perplexity(model, ids, window=args.window, max_tokens=args.eval_tokens, progress=True)
    print(f"perplexity {ppl:.3f} on {ids.numel()} held-out Wikipedia tokens (windows of {args.window})")
    if not args.no_speed and attention and any(isinstance(c, sparsecore.QuestConfig) for c in attention):
        from ..models.long_context import speed as context_speed
        prompt = ids[: args.prompt_tokens].unsqueeze(0)
        s = context_speed(model, prompt, new_tokens=args.decode_tokens, cache_factory=sparsecore.QuestCache)
        print(f"prefill {args.prompt_tokens / s['prefill_s']:.1f} tokens/s ({args.prompt_tokens}-token prompt); "
              f"decode {1 / s['decode_s']:.2f} tokens/s (batch 1, Quest cache, median of {args.decode_tokens} steps)")
    elif not args.no_speed:
        prompt = ids[: args.prompt_tokens].unsqueeze(0)
        speed = compare_speed({"model": model}, prompt, new_tokens=args.decode_tokens)["model"]
        print(f"prefill {speed['prefill_tok_s']:.1f} tokens/s ({args.prompt_tokens}-token prompt); "
              f"decode {speed['decode_tok_s']:.2f} tokens/s (batch 1, {args.decode_tokens} steps)")
    return 0

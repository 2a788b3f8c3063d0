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
    p.add_argument("--profile", action="store_true",
                   help="print where the time of one decode step and one prefill goes (linears, lm_head, attention, "
                        "norms, ... and the top operators), for the model and, if it is sparse, its dense twin")
    p.add_argument("--profile-prompt", type=int, default=512, metavar="TOKENS",
                   help="prompt length of the profiled prefill (default 512)")
    p.set_defaults(fn=run)


def run(args) -> int:
    import sparsecore
    from ..models import perplexity
    from ..models.recipes import load_model, token_stream
    from ..models.speed import compare_speed

    check_positive(eval_tokens=args.eval_tokens, window=args.window, prompt_tokens=args.prompt_tokens,
                   decode_tokens=args.decode_tokens, profile_prompt=args.profile_prompt)
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
    ids = token_stream(tok, "eval", max(args.eval_tokens, args.profile_prompt if args.profile else 0))
    if args.profile:
        _print_profile(model, ids[: args.profile_prompt].unsqueeze(0), args.decode_tokens)
    ids = ids[: args.eval_tokens]
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


def _print_profile(model, prompt, decode_steps: int) -> None:
    from ..activation import ActSparseLinear
    from ..models.profile import dense_twin, format_profile, profile_model
    from ..nn import SparseLinear

    models = {"this model": model}
    if any(isinstance(m, (SparseLinear, ActSparseLinear)) for m in model.modules()):
        models = {"dense twin": dense_twin(model), "this model": model}
    profiles = {name: profile_model(m, prompt, decode_steps=decode_steps) for name, m in models.items()}
    print(f"profile: decode steps after a {prompt.shape[1]}-token prompt (mean of {decode_steps}), and the prefill "
          f"of that prompt; exclusive time per module family (forward hooks), 'other' = the rest of the wall time")
    print(format_profile(profiles))
    print()

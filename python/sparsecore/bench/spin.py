"""The thread pools, measured on whole-model decode and prefill.

Between two sparsecore kernel calls of a decode step, torch runs norms, rotary and
attention. A worker that sleeps between calls pays a condition-variable wake-up (tens of
microseconds) at each of the ~210 calls of a SmolLM2 step; a worker that keeps spinning
takes a core from torch's ops in between. This benchmark decodes the same pruned model
with several spin lengths, dense beside it, taking turns, and prints tokens/s and the
ratio to dense per setting (``sparsecore.set_spin_us``; the default is chosen from it).
The spin settings run on sparsecore's own pool; "openmp" runs the kernels on torch's
OpenMP threads instead (the default, ``sparsecore.set_thread_backend``), where torch's
workers, spinning after each torch op, no longer compete with a second pool for the cores.
"""

from __future__ import annotations

import argparse
import json

import torch

# "openmp" = torch's OpenMP threads; microseconds of spin on our own pool; "held" = our pool
# with the default spin plus threads held while a forward is in flight.
SPINS_US = ("openmp", 0, 200, 2000, 20000, "held")


def run(spins=SPINS_US, sparsity: float = 0.5, prompt_tokens: int = 128, new_tokens: int = 32,
        rounds: int = 3) -> list[dict]:
    import sparsecore
    from sparsecore.models.recipes import load_model
    from sparsecore.models.speed import compare_speed

    dense, tok = load_model()
    sparse, _ = load_model()
    report = sparsecore.sparsify_(sparse, sparsecore.MagnitudeConfig(sparsity=sparsity))
    prompt = torch.randint(100, tok.vocab_size, (1, prompt_tokens), generator=torch.Generator().manual_seed(0))
    from sparsecore.runtime import _hold, _release

    before = sparsecore.get_spin_us()
    rows = []
    try:
        for spin in spins:
            held = spin == "held"
            sparsecore.set_thread_backend("auto" if spin == "openmp" else "own")
            sparsecore.set_spin_us(-1 if held or spin == "openmp" else int(spin))
            if held:
                sparsecore.hold_threads_during_forward(sparse)
            else:  # the hooks sparsify_ registered: off for the plain spin settings
                _remove_hooks(sparse, _hold, _release)
            speed = compare_speed({"dense": dense, "sparse": sparse}, prompt, new_tokens=new_tokens, rounds=rounds)
            rows.append({"spin_us": spin, "dense_tok_s": speed["dense"]["decode_tok_s"],
                         "sparse_tok_s": speed["sparse"]["decode_tok_s"],
                         "dense_prefill_tok_s": speed["dense"]["prefill_tok_s"],
                         "sparse_prefill_tok_s": speed["sparse"]["prefill_tok_s"],
                         "layers_sparse": sum(r.format != "dense (fallback)" for r in report.layers)})
            print(f"  spin {spin} us: {rows[-1]}", flush=True)
    finally:
        sparsecore.set_spin_us(before)
        sparsecore.set_thread_backend("auto")
    return rows


def _remove_hooks(model, *fns) -> None:
    for hooks in (model._forward_pre_hooks, model._forward_hooks):
        for key in [k for k, fn in hooks.items() if fn in fns]:
            del hooks[key]
            model._forward_hooks_always_called.pop(key, None)


def table(rows: list[dict]) -> str:
    lines = ["| pool / spin (us) | dense decode tok/s | sparse decode tok/s | decode x | prefill x |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['spin_us']} | {r['dense_tok_s']:.1f} | {r['sparse_tok_s']:.1f} | "
                     f"{r['sparse_tok_s'] / r['dense_tok_s']:.2f}x | "
                     f"{r['sparse_prefill_tok_s'] / r['dense_prefill_tok_s']:.2f}x |")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    spins = tuple(s if s in ("held", "openmp") else int(s) for s in args.spins.split(",")) if args.spins \
        else SPINS_US
    rows = run(spins, rounds=args.rounds)
    print(f"\nSmolLM2-135M fp32, magnitude 50% (fallback to dense per layer), batch 1, 128-token prompt, "
          f"32 decode steps, {torch.get_num_threads()} threads; dense and sparse taking turns per setting\n")
    print(table(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=1)
    return 0

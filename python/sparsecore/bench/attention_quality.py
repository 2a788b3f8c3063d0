"""Attention sparsity on a real model and real text: SmolLM2-135M (8k context) with HF's
SDPA, sparsecore dense, sliding windows + sinks, top-k and vertical-slash block selection,
BLASST and Quest.

1. Long-context perplexity at 2k / 4k / 8k over held-out Wikipedia joined into long
   documents (one forward pass per document: the whole context is attended).
2. Passkey retrieval at lengths where dense SmolLM2 succeeds, 5 depths x seeds.
3. End-to-end speed: prefill seconds and decode ms/token at the longest length.

Quest only changes decoding (prefill stays dense), so it has no perplexity row; it is judged
by retrieval and decode speed.
"""

from __future__ import annotations

import json

import torch

from ..models.long_context import apply_method, attention_methods, blasst_attention_speed, long_documents, \
    long_perplexity, passkey_accuracy, skipped_fraction, speed
from ..models.recipes import load_model


# BLASST's a values timed in the kernel alone on the model's activations (perplexity: the table).
BLASST_SWEEP = (10.0, 100.0, 300.0, 1000.0)

# The end-to-end speed rows (one prefill of the longest document each: tens of seconds).
SPEED_METHODS = ("HF SDPA (dense)", "sparsecore dense", "window 1024 + 4 sinks", "top-k 10%", "BLASST a=10",
                 "Quest 1/8")


def main(args) -> int:
    torch.manual_seed(0)
    model, tok = load_model()
    lengths = ([int(x) for x in args.lengths.split(",")] if args.lengths
               else [2048, 4096] if args.quick else [2048, 4096, 8192])
    if any(not 16 < l <= 8192 for l in lengths):
        raise SystemExit(f"error: --lengths must be in (16, 8192] (SmolLM2's context), got {args.lengths}")
    docs_per_length = 1
    pk_lengths = [1024, 2048]
    depths = [0.0, 0.5, 1.0] if args.quick else [0.0, 0.25, 0.5, 0.75, 1.0]
    seeds = [0, 1]
    results = {"perplexity": {}, "passkey": {}, "speed": {}, "skipped": {}}
    docs = {length: long_documents(tok, length, docs_per_length) for length in lengths}
    all_methods = attention_methods(args.quick)
    for name, (configs, cache) in all_methods.items():
        stats = apply_method(model, configs)
        if cache is None:
            results["perplexity"][name] = {l: long_perplexity(model, docs[l]) for l in lengths}
            results["skipped"][name] = skipped_fraction(stats)
        results["passkey"][name] = passkey_accuracy(model, tok, pk_lengths, depths, seeds, cache_factory=cache)
        if name in SPEED_METHODS and not args.no_speed:
            results["speed"][name] = speed(model, docs[lengths[-1]][0].unsqueeze(0), cache_factory=cache)
        print(f"  {name}: ppl {results['perplexity'].get(name)}, passkey {results['passkey'][name]}, "
              f"speed {results['speed'].get(name)}", flush=True)
    if not args.no_speed:
        results["blasst_kernel"] = blasst_attention_speed(model, docs[lengths[-1]][0].unsqueeze(0), BLASST_SWEEP)
    print_tables(results, lengths, pk_lengths, len(depths) * len(seeds))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


def print_blasst_kernel(rows: list[dict], length: int) -> None:
    print(f"\nBLASST in the attention kernel alone, SmolLM2's own q/k/v of one {length}-token prefill "
          "(all layers, 2 threads, settings taking turns, median of 3)\n")
    print("| BLASST a | attention s | tiles skipped | vs sparsecore dense |")
    print("|---|---|---|---|")
    for r in rows:
        a = f"{r['a']:g}" if r["a"] else "off"
        print(f"| {a} | {r['attention_s']:.2f} | {r['skipped']:.0%} | "
              f"{r['vs_dense']:.2f}x |")


def print_tables(results: dict, lengths, pk_lengths, trials: int) -> None:
    ppl, pk, sp = results["perplexity"], results["passkey"], results["speed"]
    ref = ppl["HF SDPA (dense)"]
    print("\nSmolLM2-135M fp32, held-out Wikipedia joined into long documents; perplexity (change vs HF SDPA dense)\n")
    print("| method | " + " | ".join(f"ppl {l // 1024}k" for l in lengths) + " | BLASST skipped |")
    print("|---|" + "---|" * (len(lengths) + 1))
    for name, row in ppl.items():
        cells = " | ".join(f"{row[l]:.2f} ({(row[l] / ref[l] - 1) * 100:+.1f}%)" for l in lengths)
        sk = results["skipped"].get(name)
        print(f"| {name} | {cells} | {f'{sk:.0%}' if sk is not None else '-'} |")
    print(f"\npasskey retrieval ({trials} prompts per length: depths x seeds), exact matches\n")
    print("| method | " + " | ".join(f"{l // 1024}k" if l % 1024 == 0 else str(l) for l in pk_lengths) + " |")
    print("|---|" + "---|" * len(pk_lengths))
    for name, row in pk.items():
        print(f"| {name} | " + " | ".join(f"{row[l]:.0%}" for l in pk_lengths) + " |")
    if results.get("blasst_kernel"):
        print_blasst_kernel(results["blasst_kernel"], lengths[-1])
    if not sp:
        return
    longest = lengths[-1]
    base = sp["HF SDPA (dense)"]
    print(f"\nend to end at {longest} tokens of context (batch 1, 2 threads): prefill of the document, then decode\n")
    print("| method | prefill s | vs HF SDPA | decode ms/token | vs HF SDPA |")
    print("|---|---|---|---|---|")
    for name, row in sp.items():
        print(f"| {name} | {row['prefill_s']:.1f} | {base['prefill_s'] / row['prefill_s']:.2f}x | "
              f"{row['decode_s'] * 1e3:.1f} | {base['decode_s'] / row['decode_s']:.2f}x |")

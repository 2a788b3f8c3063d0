"""The demo's long-context section: SmolLM2's attention on sparsecore's kernel, dense and
sparse, at a long prompt: perplexity, passkey retrieval, prefill and decode speed."""

from __future__ import annotations

import torch

from ..models.long_context import (apply_method, attention_methods, long_documents, long_perplexity,
                                   passkey_accuracy, skipped_fraction, speed)
from ..models.recipes import load_model

DEMO_METHODS = ("HF SDPA (dense)", "sparsecore dense", "window 512 + 4 sinks", "top-k 10%", "BLASST a=1",
                "Quest 1/8")


def long_context_rows(length: int, quick: bool, decode_tokens: int) -> list[dict]:
    """One row per attention method at ``length`` tokens of context (same model, taking turns)."""
    torch.manual_seed(0)
    model, tok = load_model()
    doc = long_documents(tok, length, 1)
    pk_lengths = [1024] if quick else [1024, 2048]
    depths, seeds = ([0.0, 0.5, 1.0], [0]) if quick else ([0.0, 0.25, 0.5, 0.75, 1.0], [0, 1])
    known = attention_methods(quick=False)
    rows = []
    for name in DEMO_METHODS:
        configs, cache = known[name]
        stats = apply_method(model, configs)
        row = {"method": name, "length": length}
        # Quest only changes decoding: its perplexity is the dense one.
        row["ppl"] = None if cache else long_perplexity(model, doc)
        row["skipped"] = skipped_fraction(stats)
        row["passkey"] = passkey_accuracy(model, tok, pk_lengths, depths, seeds, cache_factory=cache)
        row.update(speed(model, doc[0].unsqueeze(0), new_tokens=decode_tokens, cache_factory=cache))
        print(f"  long context, {name}: {row}", flush=True)
        rows.append(row)
    return rows


def long_context_table(rows: list[dict]) -> str:
    if not rows:
        return ""
    base = rows[0]
    lengths = sorted(rows[0]["passkey"])
    head = " | ".join(f"passkey {l}" for l in lengths)
    out = [f"| attention ({rows[0]['length']} tokens) | perplexity | {head} | prefill s | vs SDPA | decode ms/token "
           "| vs SDPA |", "|---|---|" + "---|" * len(lengths) + "---|---|---|---|"]
    for r in rows:
        ppl = f"{r['ppl']:.2f} ({(r['ppl'] / base['ppl'] - 1) * 100:+.1f}%)" if r["ppl"] else "(dense prefill)"
        pk = " | ".join(f"{r['passkey'][l]:.0%}" for l in lengths)
        out.append(f"| {r['method']} | {ppl} | {pk} | {r['prefill_s']:.1f} | {base['prefill_s'] / r['prefill_s']:.2f}x"
                   f" | {r['decode_s'] * 1e3:.1f} | {base['decode_s'] / r['decode_s']:.2f}x |")
    return "\n".join(out)

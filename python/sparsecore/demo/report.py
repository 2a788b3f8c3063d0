"""The demo's markdown report and its plot (perplexity and decode speed-up per pruning run)."""

from __future__ import annotations

import os


def _ratio(row: dict, key: str) -> float:
    return row["speed"]["sparse"][key] / row["speed"]["dense"][key]


def smollm2_table(rows: list[dict]) -> str:
    lines = ["| method | pattern | sparsity (linears) | perplexity | vs dense | file MB | decode tok/s dense -> sparse "
             "| decode x | prefill x | layers sparse | prune s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    dense_ppl = rows[0]["ppl"]
    for r in rows:
        if r["speed"] is None:
            lines.append(f"| dense | - | 0% | {r['ppl']:.2f} | 1.00x | {r['file_mb']:.0f} | - | - | - | - | - |")
            continue
        sp = r["speed"]
        lines.append(f"| {r['method']} | {r['pattern']} | {r['sparsity']:.1%} | {r['ppl']:.2f} | "
                     f"{r['ppl'] / dense_ppl:.2f}x | {r['file_mb']:.0f} | {sp['dense']['decode_tok_s']:.1f} -> "
                     f"{sp['sparse']['decode_tok_s']:.1f} | {_ratio(r, 'decode_tok_s'):.2f}x | "
                     f"{_ratio(r, 'prefill_tok_s'):.2f}x | {r['sparse_layers']} | {r['prune_s']:.0f} |")
    return "\n".join(lines)


def llama7b_table(rows: list[dict]) -> str:
    lines = ["| model | dtype | sparsity | decode tok/s dense | sparse | decode x | prefill x | layers sparse |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        sp = r["speed"]
        lines.append(f"| {r['model']} | {r['dtype']} | {r['sparsity']:.0%} | {sp['dense']['decode_tok_s']:.2f} | "
                     f"{sp['sparse']['decode_tok_s']:.2f} | {_ratio(r, 'decode_tok_s'):.2f}x | "
                     f"{_ratio(r, 'prefill_tok_s'):.2f}x | {r['sparse_layers']} |")
    return "\n".join(lines)


def _where_time_goes(rows: list[dict]) -> str:
    pruned = [r for r in rows if r["speed"] is not None]
    if not pruned:
        return ""
    r = pruned[0]
    per_token_ms = 1e3 / r["speed"]["dense"]["decode_tok_s"]
    return (f"Where SmolLM2's decode time goes (dense): {per_token_ms:.1f} ms per token, of which the 210 block "
            f"linears take {r['layer_ms_dense']:.1f} ms when timed one after another; the rest is attention, "
            f"norms, the 49152-entry lm_head (unpruned, tied to the embedding) and Python/HF overhead per step. "
            f"With the kernels chosen for the first pruned model the linears take {r['layer_ms_chosen']:.1f} ms.")


def plot(results: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results["smollm2"] if r["speed"] is not None]
    dense_ppl = results["smollm2"][0]["ppl"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    markers = {"magnitude": "o", "wanda": "s", "sparsegpt": "^"}
    # One curve per method over the unstructured sweep; N:M and block runs as lone points.
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        curve = sorted((r for r in mine if r["pattern"].endswith("unstructured")), key=lambda r: r["sparsity"])
        marker = markers.get(method, "x")
        if curve:
            line = ax1.plot([r["sparsity"] * 100 for r in curve], [r["ppl"] for r in curve], marker=marker,
                            label=f"{method} (unstructured sweep)")[0]
            ax2.plot([r["ppl"] for r in curve], [_ratio(r, "decode_tok_s") for r in curve], marker=marker,
                     color=line.get_color())
            for r in curve:
                ax2.annotate(f"{r['sparsity']:.0%}", (r["ppl"], _ratio(r, "decode_tok_s")), fontsize=6)
        for r in (r for r in mine if r not in curve):
            label = f"{method} {r['pattern']}"
            ax1.scatter(r["sparsity"] * 100, r["ppl"], marker=marker, s=70, facecolors="none", edgecolors="k",
                        label=label)
            ax2.scatter(r["ppl"], _ratio(r, "decode_tok_s"), marker=marker, s=70, facecolors="none",
                        edgecolors="k")
    ax1.axhline(dense_ppl, color="gray", ls="--", label=f"dense {dense_ppl:.1f}")
    ax1.set(xlabel="sparsity of the block linears (%)", ylabel="held-out perplexity (log)", yscale="log",
            title="SmolLM2-135M: quality")
    ax2.axhline(1.0, color="gray", ls="--")
    ax2.set(xlabel="held-out perplexity (log)", ylabel="decode speed-up vs dense", xscale="log",
            title="quality vs speed (batch 1, this CPU)")
    ax1.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(results: dict, out_dir: str) -> str:
    s = results["settings"]
    parts = ["# sparsecore demo: SmolLM2-135M pruned, on this machine", "",
             f"Held-out Wikipedia: {s['eval_tokens']} tokens, windows of {s['window']}; calibration: "
             f"{s['calib_seqs']} x {s['calib_len']} tokens from disjoint articles; speed: batch 1, "
             f"{s['prompt_tokens']}-token prompt, {s['decode_tokens']} greedy decode steps, dense and sparse "
             f"taking turns (median of 3); {results['machine']['threads']} threads, CPU path "
             f"{results['machine']['cpu_isa']}. Total {results['seconds']:.0f} s.", "",
             smollm2_table(results["smollm2"]), "", _where_time_goes(results["smollm2"]), ""]
    profiled = next((r for r in results["smollm2"] if r.get("profile")), None)
    if profiled:
        from ..models.profile import format_profile
        parts += [f"## Where a decode step goes: dense vs {profiled['method']} {profiled['pattern']}", "",
                  "Exclusive ms per module family (forward hooks; 'other' is the rest of the wall time: HF's "
                  "model code, the KV cache, sampling), 8 decode steps after the prompt, and one prefill of it.",
                  format_profile(profiled["profile"]), ""]
    if results["llama7b"]:
        parts += ["## Decode on Llama-7B-shaped layers (random weights, magnitude pruning)", "",
                  llama7b_table(results["llama7b"]), ""]
    if results.get("long_context"):
        from .long_context import long_context_table
        parts += ["## Long context: sparse attention on SmolLM2 (dense weights)", "",
                  "Perplexity of one held-out document of that length; passkey: exact retrievals over depths x "
                  "seeds; prefill of the document, then greedy decode (median step).", "",
                  long_context_table(results["long_context"]), ""]
    plot(results, os.path.join(out_dir, "tradeoff.png"))
    parts += ["![sparsity vs perplexity vs speed](tradeoff.png)", ""]
    text = "\n".join(parts)
    with open(os.path.join(out_dir, "report.md"), "w", encoding="utf-8") as fh:
        fh.write(text)
    return text

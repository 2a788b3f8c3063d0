"""sparsecore vs llm-compressor (``oneshot`` with SparseGPT and Wanda) on SmolLM2: same
calibration windows, same held-out text, same machine, in one run.

llm-compressor 0.14 pins transformers<=5.17 and compressed-tensors==0.19, so it runs in its
own venv (``bash scripts/setup_llmcompressor.sh``) through :mod:`llmcompressor_worker`. Both
tools prune in a child process of their own, so the peak memory (the child's peak RSS,
VmHWM, model load included) and the pruning time (the pruning call alone) are measured the
same way.
llm-compressor's output is a plain checkpoint (sparse formats were removed from
compressed-tensors in 0.15), which runs dense everywhere on a CPU; the decode columns show
that speed, the same file loaded by :func:`sparsecore.load_pretrained`, and ours.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import torch

PATTERNS = ("50%", "2:4")
METHODS = ("sparsegpt", "wanda")


def _child(cmd: list[str]) -> str:
    """Run ``cmd``; its stdout (an error with its stderr's tail if it fails)."""
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout


# Runs `sparsecore prune` in a child and prints its peak RSS the way the worker does (VmHWM).
_PRUNE = ("import sys; from sparsecore.cli import main; rc = main(sys.argv[1:]); "
          "from sparsecore.bench.llmcompressor_worker import peak_rss_mb; print(peak_rss_mb()); sys.exit(rc)")


def _theirs(venv_python: str, model_dir: str, calib: str, method: str, pattern: str, out: str, threads: int):
    worker = os.path.join(os.path.dirname(__file__), "llmcompressor_worker.py")
    stdout = _child([venv_python, "-P", worker, model_dir, calib, method, pattern, out, str(threads)])
    result = json.loads(stdout.strip().splitlines()[-1])
    return result["seconds"], result["peak_rss_mb"]


def _ours(method: str, pattern: str, out: str, args) -> tuple[float, float]:
    stdout = _child([sys.executable, "-c", _PRUNE, "prune", "--method", method, "--pattern",
                      "unstructured" if pattern == "50%" else pattern, "--sparsity", "0.5",
                      "--calib-seqs", str(args.calib_seqs), "--calib-len", str(args.calib_len), "--output", out])
    with open(os.path.join(out, "sparsecore.json"), encoding="utf-8") as fh:
        return float(json.load(fh)["prune_seconds"]), float(stdout.strip().splitlines()[-1])


def main(args) -> int:
    import sparsecore
    from ..models import load_smollm2, perplexity
    from ..models.interop import export_pretrained, load_pretrained
    from ..models.profile import dense_twin
    from ..models.pruned_dir import load_pruned
    from ..models.recipes import calibration_batches, token_stream
    from ..models.speed import compare_speed

    venv_python = os.path.join(args.venv, "bin", "python")
    if not os.path.isfile(venv_python):
        raise ValueError(f"no llm-compressor venv at {args.venv!r}: run 'bash scripts/setup_llmcompressor.sh' first")
    threads = torch.get_num_threads()
    dense, tok = load_smollm2()
    eval_ids = token_stream(tok, "eval", args.eval_tokens)
    prompt = eval_ids[:128].unsqueeze(0)
    rows = []
    with tempfile.TemporaryDirectory(prefix="sparsecore-llmc-") as tmp:
        model_dir = os.path.join(tmp, "smollm2")
        export_pretrained(dense, tok, model_dir)  # the same weights for both tools, as a plain HF checkpoint
        windows = torch.cat([b["input_ids"] for b in calibration_batches(tok, args.calib_seqs, args.calib_len)])
        calib = os.path.join(tmp, "calib.pt")
        torch.save(windows, calib)
        p_dense = perplexity(dense, eval_ids, max_tokens=args.eval_tokens)
        for method in args.methods.split(","):
            for pattern in args.patterns.split(","):
                theirs_dir, ours_dir = os.path.join(tmp, f"llmc-{method}-{pattern.replace(':', 'of')}"), os.path.join(tmp, f"sc-{method}-{pattern.replace(':', 'of')}")
                t_theirs, m_theirs = _theirs(venv_python, model_dir, calib, method, pattern, theirs_dir, threads)
                t_ours, m_ours = _ours(method, pattern, ours_dir, args)
                theirs_sc, _ = load_pretrained(theirs_dir)              # their file on our kernels
                theirs_dense = dense_twin(theirs_sc)  # their file as it runs elsewhere
                ours, _ = load_pruned(ours_dir)
                sparsecore.select_kernels_(ours, tokens=1)
                blocks = [m.weight for n, m in theirs_dense.named_modules()
                          if isinstance(m, torch.nn.Linear) and n.startswith("model.layers.")]
                zeros_theirs = sum(int((w == 0).sum()) for w in blocks) / sum(w.numel() for w in blocks)
                ppl_theirs = perplexity(theirs_dense, eval_ids, max_tokens=args.eval_tokens)
                ppl_ours = perplexity(ours, eval_ids, max_tokens=args.eval_tokens)
                speed = compare_speed({"dense": dense, "theirs": theirs_dense, "theirs_sc": theirs_sc, "ours": ours},
                                      prompt, new_tokens=args.decode_tokens)
                rows.append({"method": method, "pattern": pattern, "ppl_dense": p_dense, "ppl_ours": ppl_ours,
                             "ppl_theirs": ppl_theirs, "zeros_theirs": zeros_theirs,
                             "prune_s_ours": t_ours, "prune_s_theirs": t_theirs,
                             "peak_mb_ours": m_ours, "peak_mb_theirs": m_theirs,
                             **{f"decode_{k}": v["decode_tok_s"] for k, v in speed.items()}})
                del theirs_sc, theirs_dense, ours
                print(_row(rows[-1]), flush=True)
    print(f"\nSmolLM2-135M fp32, calibration {args.calib_seqs} x {args.calib_len} tokens (the same windows for both), "
          f"perplexity on {eval_ids.numel()} held-out tokens (dense {p_dense:.2f}), {threads} threads; "
          f"decode tok/s batch 1, {args.decode_tokens} steps after a 128-token prompt, models taking turns\n")
    print(HEADER)
    for r in rows:
        print(_row(r))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=2)
    return 0


HEADER = ("| method | pattern | ppl sparsecore | ppl llm-compressor (zeros) | ours / theirs | prune s ours | theirs "
          "| peak MB ours | theirs | decode dense | their file (dense) | their file on sparsecore | ours |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def _row(r: dict) -> str:
    return (f"| {r['method']} | {r['pattern']} | {r['ppl_ours']:.2f} | {r['ppl_theirs']:.2f} ({r['zeros_theirs']:.1%}) | "
            f"{r['ppl_ours'] / r['ppl_theirs']:.3f} | {r['prune_s_ours']:.0f} | {r['prune_s_theirs']:.0f} | "
            f"{r['peak_mb_ours']:.0f} | {r['peak_mb_theirs']:.0f} | {r['decode_dense']:.1f} | "
            f"{r['decode_theirs']:.1f} | {r['decode_theirs_sc']:.1f} | {r['decode_ours']:.1f} |")

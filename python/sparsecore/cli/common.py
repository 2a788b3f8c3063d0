"""Arguments and steps shared by the prune, eval and demo commands."""

from __future__ import annotations

import argparse

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="smollm2",
                   help="'smollm2' (bundled SmolLM2-135M), a .gguf file, an HF model directory, or a pruned "
                        "directory written by 'sparsecore prune' (default: smollm2)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp32", help="compute dtype (default fp32)")


def add_calibration_arguments(p: argparse.ArgumentParser, sequences: int, length: int) -> None:
    p.add_argument("--calib-seqs", type=int, default=sequences,
                   help=f"calibration sequences of Wikipedia text (default {sequences}; the papers use 128)")
    p.add_argument("--calib-len", type=int, default=length, help=f"tokens per calibration sequence (default {length})")


def add_eval_arguments(p: argparse.ArgumentParser, tokens: int) -> None:
    p.add_argument("--eval-tokens", type=int, default=tokens,
                   help=f"held-out Wikipedia tokens for perplexity (default {tokens})")
    p.add_argument("--window", type=int, default=1024, help="perplexity window (default 1024)")
    p.add_argument("--prompt-tokens", type=int, default=128, help="prompt length for the speed test (default 128)")
    p.add_argument("--decode-tokens", type=int, default=32, help="decode steps timed (default 32)")
    p.add_argument("--threads", type=int, default=None, help="torch and sparsecore threads (default: all cores)")


def set_threads(n: int | None) -> None:
    import sparsecore

    if n is not None:
        if n < 1:
            raise ValueError(f"--threads must be >= 1, got {n}")
        torch.set_num_threads(n)
        sparsecore.set_num_threads(n)


def check_positive(**values: int) -> None:
    for name, v in values.items():
        if v is None or int(v) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {v}")

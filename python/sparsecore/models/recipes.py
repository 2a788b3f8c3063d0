"""The pieces the CLI and the demo share: which model, which text, which pruning config."""

from __future__ import annotations

import os

import torch

from ..pruning import METHODS, Pattern

BUNDLED = "smollm2"


def load_model(spec: str = BUNDLED, dtype: torch.dtype = torch.float32, *, detect_sparse: bool = True):
    """(model, tokenizer) from ``"smollm2"`` (the bundled SmolLM2-135M), a GGUF file, or a local HF
    model directory (config.json + weights). Never downloads. With ``detect_sparse``, an HF
    directory's already-pruned linears run on the sparsecore kernels (see
    :func:`sparsecore.load_pretrained`); without it they stay ``nn.Linear`` (to prune further)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .real_data import load_smollm2

    if spec == BUNDLED:
        return load_smollm2(dtype)
    if os.path.isfile(spec) and spec.endswith(".gguf"):
        d, f = os.path.split(os.path.abspath(spec))
        tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
        return AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=dtype).eval(), tok
    if os.path.isdir(spec) and os.path.exists(os.path.join(spec, "config.json")):
        from .pruned_dir import is_pruned_dir, load_pruned
        if is_pruned_dir(spec):
            return load_pruned(spec, dtype)
        if detect_sparse:  # every pruned layer sparse, as from a pruned directory: callers pick kernels
            from .interop import load_pretrained
            return load_pretrained(spec, dtype, fallback_to_dense=False)
        from .interop import _check_not_legacy_sparse
        from .pruned_dir import _apply_attention_recipe
        _check_not_legacy_sparse(spec)
        model = AutoModelForCausalLM.from_pretrained(spec, dtype=dtype).eval()
        _apply_attention_recipe(model)
        return model, AutoTokenizer.from_pretrained(spec)
    raise ValueError(f"model {spec!r} is not 'smollm2', a .gguf file or a directory with config.json")


def token_stream(tokenizer, split: str, max_tokens: int) -> torch.Tensor:
    """The first ``max_tokens`` tokens of the held-out (``"eval"``) or calibration Wikipedia text."""
    from .real_data import wiki_text

    text = wiki_text(split)
    # ~4.5 characters per token on this text; tokenise a little more than needed.
    ids = tokenizer(text[: int(max_tokens * 6) + 1000], return_tensors="pt").input_ids[0]
    if ids.numel() < max_tokens:
        ids = tokenizer(text, return_tensors="pt").input_ids[0]
    return ids[:max_tokens]


def calibration_batches(tokenizer, sequences: int, length: int) -> list[dict]:
    """``sequences`` disjoint windows of ``length`` tokens of calibration text, as model kwargs."""
    if sequences < 1 or length < 2:
        raise ValueError(f"need >= 1 calibration sequence of >= 2 tokens, got {sequences} x {length}")
    ids = token_stream(tokenizer, "calibration", sequences * length)
    if ids.numel() < sequences * length:
        raise ValueError(f"the calibration text has only {ids.numel()} tokens, asked for {sequences} x {length}")
    return [{"input_ids": ids[i * length:(i + 1) * length].unsqueeze(0), "use_cache": False}
            for i in range(sequences)]


def make_config(method: str, pattern: Pattern, *, calibration=None, allocation: str = "uniform",
                fallback_to_dense: bool = True, tune_tokens: int = 1, progress: bool = True, lm_head: bool = False):
    """The ``sparsify_`` config for a method name and a pattern (``lm_head``: prune the output
    embedding too)."""
    from ..sparsify import BlockConfig, MagnitudeConfig, NMConfig, SparseGPTConfig, WandaConfig

    common = {"fallback_to_dense": fallback_to_dense, "tune_tokens": tune_tokens, "lm_head": lm_head}
    if method not in METHODS:
        raise ValueError(f"unknown pruning method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "magnitude":
        if allocation != "uniform":
            raise ValueError("magnitude pruning takes uniform allocation only")
        if pattern.nm is not None:
            return NMConfig(n=pattern.nm[0], m=pattern.nm[1], **common)
        if pattern.block is not None:
            return BlockConfig(sparsity=pattern.sparsity, blocksize=pattern.block, **common)
        return MagnitudeConfig(sparsity=pattern.sparsity, **common)
    text = (f"{pattern.nm[0]}:{pattern.nm[1]}" if pattern.nm else
            f"block{pattern.block[0]}x{pattern.block[1]}" if pattern.block else "unstructured")
    if allocation == "owl" and pattern.nm is not None:
        raise ValueError("OWL allocates unstructured or block sparsity per layer; N:M has a fixed ratio")
    cls = WandaConfig if method == "wanda" else SparseGPTConfig
    return cls(sparsity=pattern.sparsity, pattern=text, calibration=calibration, allocation=allocation,
               progress=progress, **common)

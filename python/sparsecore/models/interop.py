"""Checkpoints other tools write and read: HF directories whose weights are already pruned.

Since compressed-tensors 0.15 (March 2026) the sparse storage formats (``sparse-bitmask``,
``sparse-24-bitmask``) are gone from compressed-tensors, transformers (>= 5 requires
compressed-tensors >= 0.15) and vLLM (which rejects any checkpoint with a ``sparsity_config``
that targets layers). What llm-compressor 0.14 writes for a pruned model, and what
transformers and vLLM load, is a plain HF checkpoint whose weights hold the zeros. So:

- :func:`export_pretrained` writes a sparsecore model as exactly that: dense safetensors of
  the pruned weights (optionally cast to bf16/fp16), ``config.json`` and the tokenizer;
  ``AutoModelForCausalLM.from_pretrained`` and ``vllm serve`` read it as they read any model.
- :func:`load_pretrained` reads any model directory: a ``sparsecore prune`` directory, or an
  HF directory (llm-compressor's output, an export, a model pruned anywhere else) whose
  already-sparse linears it finds by their zeros (:func:`detect_pattern`: N:M where every
  group of M inputs holds at most N nonzeros, else unstructured) and runs on the sparsecore
  kernels with the same per-layer speed check as :func:`sparsecore.sparsify_` (N:M layers
  timed in the N:M kernel and as CSR, the faster kept; dense where dense is faster).
"""

from __future__ import annotations

import json
import os

import torch
from torch import nn

from ..formats.nm import SUPPORTED_M
from ..pruning import Pattern

# A layer with fewer zeros than this stays dense: below it no sparse kernel beats dense.
MIN_SPARSITY = 0.3


def detect_pattern(weight: torch.Tensor, min_sparsity: float = MIN_SPARSITY) -> Pattern | None:
    """The sparsity pattern a pruned weight already has: N:M (the smallest M in
    ``SUPPORTED_M`` whose groups along the input hold at most M/2 nonzeros), else
    unstructured at its measured sparsity; ``None`` when it is sparser than ``min_sparsity``
    in neither sense (a dense layer)."""
    if weight.dim() != 2:
        raise ValueError(f"expected a 2-D weight, got shape {tuple(weight.shape)}")
    nonzero = weight.detach() != 0
    sparsity = 1.0 - nonzero.float().mean().item()
    if sparsity < min_sparsity:
        return None
    rows, cols = nonzero.shape
    for m in SUPPORTED_M:
        if m < 4 or cols % m:
            continue  # 1:2 groups are too short to pay; inputs must split into whole groups
        n = int(nonzero.reshape(rows, cols // m, m).sum(dim=2).max().item())
        if 0 < n <= m // 2:
            return Pattern(nm=(n, m))
    return Pattern(sparsity=min(sparsity, 0.999))


def sparsify_pruned_(model: nn.Module, *, min_sparsity: float = MIN_SPARSITY, tune_tokens: int = 1,
                     fallback_to_dense: bool = True, prefill_tokens: int | None = 128, fuse_projections: bool = False):
    """Turn every already-pruned ``nn.Linear`` of ``model`` (the output embedding included
    when it is untied and sparse) into a :class:`sparsecore.nn.SparseLinear` holding exactly
    its nonzeros, then keep dense the layers where sparse is slower at ``tune_tokens`` (and
    tune prefill up to ``prefill_tokens``, and with ``fuse_projections`` judge the layers
    that read the same input as one, as :func:`sparsecore.select_kernels_` does).
    Returns the :class:`sparsecore.SparsifyReport`; the model is unchanged if anything fails."""
    from ..nn import SparseLinear
    from ..kernel_choice import _check_prefill_tokens, _choose_kernels, _set_child
    from ..sparsify import _format_for, _output_embedding, _shared_weights, _targets

    if not 0.0 < float(min_sparsity) < 1.0:
        raise ValueError(f"min_sparsity must be in (0, 1), got {min_sparsity}")
    _check_prefill_tokens(prefill_tokens)
    head = _output_embedding(model)
    targets = _targets(model, None, lm_head=isinstance(head, nn.Linear))
    shared = _shared_weights(model, targets)  # a tied head is the (dense) input embedding: left alone
    built = {}
    for name, linear in targets:
        pattern = None if name in shared else detect_pattern(linear.weight, min_sparsity)
        if pattern is None:
            continue
        try:  # as sparsify_ does: built by pattern, then the fastest format measured below
            fmt = _format_for("auto", pattern, linear.in_features)
            built[name] = (linear, SparseLinear.from_linear(linear, format=fmt, blocksize=pattern.block or (16, 16),
                                                            nm=pattern.nm or (2, 4)))
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"layer {name!r} ({linear.out_features}x{linear.in_features}): {exc}") from exc
    try:
        for name, (_, sparse) in built.items():
            _set_child(model, name, sparse)
        return _choose_kernels(model, [(n, s) for n, (_, s) in built.items()], int(tune_tokens), fallback_to_dense,
                               lambda name, _sparse: built[name][0], lambda name, dense: dense, reformat=True,
                               prefill_tokens=prefill_tokens, fuse=fuse_projections)
    except BaseException:
        for name, (linear, _) in built.items():
            _set_child(model, name, linear)
        raise


_REMOVED_FORMATS = ("sparse-bitmask", "sparse-24-bitmask", "marlin-24")


def _check_not_legacy_sparse(path: str) -> None:
    """Refuse, with the way out, a checkpoint stored in a sparse format nothing current reads."""
    try:
        with open(os.path.join(path, "config.json"), encoding="utf-8") as fh:
            config = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path!r}: cannot read config.json ({exc})") from exc
    quant = config.get("quantization_config") or config.get("compression_config") or {}
    sparsity = quant.get("sparsity_config") if isinstance(quant, dict) else None
    fmt = sparsity.get("format") if isinstance(sparsity, dict) else None
    if fmt in _REMOVED_FORMATS:
        raise ValueError(
            f"{path!r} stores its weights in compressed-tensors' {fmt!r} format, which compressed-tensors "
            f"removed in 0.15 (and transformers >= 5 and vLLM with it); decompress it with compressed-tensors "
            f"<= 0.14.0.1 and transformers 4.x (from_pretrained, then save_pretrained) and load the result")


def _has_sparse_parts(path: str) -> bool:
    """Whether the directory's safetensors hold sparsecore's compressed layers (what HF
    ``save_pretrained`` writes for a sparsified model)."""
    from safetensors import safe_open

    for name in sorted(os.listdir(path)):
        if name.endswith(".safetensors"):
            with safe_open(os.path.join(path, name), framework="pt") as fh:
                if any(k.endswith(".weight_layout") for k in fh.keys()):
                    return True
    return False


def _load_saved_sparse(path: str, dtype: torch.dtype):
    """A ``model.save_pretrained(dir)`` of a sparsified model: built from its config, its
    sparse layers rebuilt (and validated) from their parts, every other key checked."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM

    from ..nn import load_sparse_state_dict

    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path), dtype=torch.float32)
    state = {}
    for name in sorted(os.listdir(path)):
        if name.endswith(".safetensors"):
            state.update(load_file(os.path.join(path, name)))
    head, embed = model.get_output_embeddings(), model.get_input_embeddings()
    if head is not None and embed is not None and head.weight is embed.weight:
        # HF stores a tied head once, under the embedding's name.
        names = {id(m): n for n, m in model.named_modules()}
        head_key, embed_key = f"{names[id(head)]}.weight", f"{names[id(embed)]}.weight"
        if head_key not in state and embed_key in state:
            state[head_key] = state[embed_key]
    load_sparse_state_dict(model, state, strict=True)
    return model.to(dtype).eval()


def load_pretrained(path: str, dtype: torch.dtype = torch.float32, *, tune_tokens: int = 1,
                    min_sparsity: float = MIN_SPARSITY, fallback_to_dense: bool = True):
    """``(model, tokenizer)`` from a model directory, its sparse layers on the sparsecore kernels:
    a ``sparsecore prune`` directory (stored compressed), the ``save_pretrained`` directory of
    a sparsified model (stored compressed), or any HF directory (see the module docstring). Attention recipes saved in ``config.json`` are re-applied. ``tune_tokens`` and
    ``fallback_to_dense``: as in :func:`sparsecore.sparsify_` (layers where sparse is slower at
    that batch size stay dense, holding the same pruned weights)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .pruned_dir import _apply_attention_recipe, is_pruned_dir, load_pruned

    if not os.path.isdir(path) or not os.path.isfile(os.path.join(path, "config.json")):
        raise ValueError(f"{path!r} is not a model directory (no config.json)")
    if is_pruned_dir(path):
        return load_pruned(path, dtype)
    _check_not_legacy_sparse(path)
    if _has_sparse_parts(path):
        model = _load_saved_sparse(path, dtype)
        if fallback_to_dense:
            from ..kernel_choice import select_kernels_
            select_kernels_(model, tune_tokens)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval()
        sparsify_pruned_(model, min_sparsity=min_sparsity, tune_tokens=tune_tokens,
                         fallback_to_dense=fallback_to_dense)
    _apply_attention_recipe(model)
    return model, AutoTokenizer.from_pretrained(path)


def directory_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)
               if os.path.isfile(os.path.join(path, f)))


def export_pretrained(model: nn.Module, tokenizer, path: str, *, dtype: torch.dtype | None = None,
                      overwrite: bool = False) -> int:
    """Write ``model`` (sparsecore layers included) as a plain HF checkpoint of its pruned
    weights at ``path``, cast to ``dtype`` if given; returns the bytes written. The directory
    is assembled beside ``path`` and renamed into place; ``path`` must be new, empty, or a
    directory sparsecore wrote. ``model`` itself is not changed. Activation sparsity is a
    runtime choice and is not stored (its linears are written dense)."""
    from .._dtypes import VALUE_DTYPES
    from .profile import dense_twin
    from .pruned_dir import EXPORT_MANIFEST, plain_config, write_model_dir

    if dtype is not None and dtype not in VALUE_DTYPES:
        raise TypeError(f"dtype must be None or one of float32, bfloat16, float16, got {dtype}")
    if not hasattr(model, "save_pretrained") or not hasattr(model, "config"):
        raise TypeError(f"export_pretrained needs a transformers model, got {type(model).__name__}")

    def write(tmp):
        twin = dense_twin(model)
        if dtype is not None:
            twin = twin.to(dtype)
        plain_config(twin.config)
        twin.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)

    record = {"export": "hf-dense", "dtype": str(dtype or next(model.parameters()).dtype).replace("torch.", "")}
    write_model_dir(path, write, EXPORT_MANIFEST, record, overwrite=overwrite)
    return directory_bytes(path)

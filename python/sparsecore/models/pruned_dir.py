"""A pruned model as a directory: ``model.safetensors`` (sparse layers compressed),
``config.json`` and the tokenizer files (HF format), and ``sparsecore.json`` (how it was
pruned, and which files sparsecore wrote). The directory is assembled under a temporary
name beside the target and renamed into place only when complete (see
:mod:`sparsecore._files`), so a failure leaves nothing half-written.

An existing target is replaced only when it is empty or is a directory that sparsecore
wrote and that holds nothing else (every entry is listed in its ``sparsecore.json``);
anything else is refused, ``--overwrite`` or not: ``--output ~/models --overwrite`` can
never wipe a folder of yours.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import torch

from .._files import replace_directory
from ..serialization import load_sparse, save_sparse

WEIGHTS = "model.safetensors"
RECIPE = "sparsecore.json"
EXPORT_MANIFEST = "sparsecore-export.json"  # written by sparsecore.export_pretrained
_FILES_KEY = "files_written"


def is_pruned_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, RECIPE)) and os.path.isfile(os.path.join(path, WEIGHTS))


def _written_by_sparsecore(path: str) -> bool:
    """Whether every entry of ``path`` is a file that sparsecore's own manifest lists (a
    pruned directory's ``sparsecore.json`` or an export's ``sparsecore-export.json``)."""
    for manifest in (RECIPE, EXPORT_MANIFEST):
        if not os.path.isfile(os.path.join(path, manifest)):
            continue
        try:
            with open(os.path.join(path, manifest), encoding="utf-8") as fh:
                listed = json.load(fh).get(_FILES_KEY)
        except (OSError, ValueError, AttributeError):
            return False
        if not isinstance(listed, list):
            return False
        allowed = set(listed) | {manifest}
        return all(name in allowed and os.path.isfile(os.path.join(path, name)) for name in os.listdir(path))
    return False


def check_output_dir(path: str, overwrite: bool) -> None:
    """Raise before any work if ``path`` cannot receive a pruned model."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"output {path!r} exists and is not a directory")
    if os.path.isdir(path) and os.listdir(path):
        if not _written_by_sparsecore(path):
            raise ValueError(f"output directory {path!r} is not empty and is not a model directory written by "
                             f"sparsecore (only those, or empty directories, are ever replaced); choose a new path")
        if not overwrite:
            raise ValueError(f"output directory {path!r} holds a sparsecore model (pass --overwrite to replace it)")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ValueError(f"the parent directory of {path!r} does not exist")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"cannot write to {parent!r}")


def write_model_dir(path: str, write, manifest: str, record: dict, *, overwrite: bool = False) -> None:
    """Assemble a model directory with ``write(tmp_dir)`` beside ``path``, list what was
    written in ``manifest``, and rename it into place (see the module docstring)."""
    check_output_dir(path, overwrite)
    parent = os.path.dirname(os.path.abspath(path))
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(path))}.", dir=parent)
    try:
        write(tmp)
        written = sorted(os.listdir(tmp))
        with open(os.path.join(tmp, manifest), "w", encoding="utf-8") as fh:
            json.dump({**record, _FILES_KEY: written + [manifest]}, fh, indent=2)
        check_output_dir(path, overwrite)  # nothing appeared there while we were writing
        replace_directory(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def plain_config(config):
    """The config to save with plain tensors: a GGUF-loaded config is flagged as quantized."""
    if getattr(config, "quantization_config", None) is not None:
        config.quantization_config = None
    return config


def save_pruned(model, tokenizer, path: str, recipe: dict, *, overwrite: bool = False) -> None:
    """Write the pruned model directory atomically (see the module docstring)."""
    def write(tmp):
        save_sparse(model, os.path.join(tmp, WEIGHTS))
        plain_config(model.config).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    write_model_dir(path, write, RECIPE, recipe, overwrite=overwrite)


def load_pruned(path: str, dtype: torch.dtype = torch.float32):
    """(model, tokenizer) from a :func:`save_pruned` directory, sparse layers as ``SparseLinear``."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if not is_pruned_dir(path):
        raise ValueError(f"{path!r} is not a sparsecore pruned-model directory (no {RECIPE} / {WEIGHTS})")
    config = AutoConfig.from_pretrained(path)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    load_sparse(model, os.path.join(path, WEIGHTS))
    model = model.to(dtype).eval()
    _apply_attention_recipe(model)
    return model, AutoTokenizer.from_pretrained(path)


def _apply_attention_recipe(model) -> None:
    """A saved model keeps its attention recipe (``config.sparsecore_attention``): re-apply it."""
    recipe = getattr(model.config, "sparsecore_attention", None)
    if recipe:
        from ..attention import apply_recipe
        apply_recipe(model, recipe)


def read_recipe(path: str) -> dict:
    with open(os.path.join(path, RECIPE), encoding="utf-8") as fh:
        recipe = json.load(fh)
    recipe.pop(_FILES_KEY, None)
    return recipe

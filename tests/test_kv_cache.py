"""GrowingCache: the same keys, values and generated tokens as transformers' DynamicCache,
appended in place (no per-step copy of the cache), through generate(), beam search and crop."""

import pytest
import torch

transformers = pytest.importorskip("transformers")
from hypothesis import given, settings, strategies as st  # noqa: E402
from transformers import DynamicCache  # noqa: E402

from sparsecore import GrowingCache, QuestCache  # noqa: E402
from sparsecore.attention.kv_cache import GrowingLayer  # noqa: E402


def tiny_llama(sliding=False, seed=0):
    torch.manual_seed(seed)
    kwargs = dict(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    if sliding:
        config = transformers.Qwen2Config(**kwargs, use_sliding_window=True, sliding_window=8, max_window_layers=1,
                                          layer_types=["full_attention", "sliding_attention", "sliding_attention"])
        return transformers.Qwen2ForCausalLM(config).eval()
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(**kwargs)).eval()


@settings(max_examples=40, deadline=None)
@given(chunks=st.lists(st.integers(1, 300), min_size=1, max_size=6), batch=st.integers(1, 3),
       dtype=st.sampled_from([torch.float32, torch.bfloat16]))
def test_same_contents_as_dynamic_cache(chunks, batch, dtype):
    grown, dynamic = GrowingCache(), DynamicCache()
    for i, n in enumerate(chunks):
        k, v = torch.randn(batch, 2, n, 8, dtype=dtype), torch.randn(batch, 2, n, 8, dtype=dtype)
        got = grown.update(k, v, 0)
        want = dynamic.update(k, v, 0)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        assert grown.get_seq_length() == dynamic.get_seq_length() == sum(chunks[:i + 1])
    assert isinstance(grown.layers[0], GrowingLayer)


def test_appends_in_place_and_grows_by_half():
    cache = GrowingCache()
    k = torch.randn(1, 2, 600, 8)
    keys, _ = cache.update(k, k, 0)
    base = keys.data_ptr()
    capacity = cache.layers[0]._store[0].shape[-2]
    assert capacity == 600 + 256  # room for the decode steps after a prompt
    for step in range(capacity - 600):
        keys, _ = cache.update(torch.randn(1, 2, 1, 8), torch.randn(1, 2, 1, 8), 0)
        assert keys.data_ptr() == base  # a view of the same buffer: nothing copied
    keys, _ = cache.update(torch.randn(1, 2, 1, 8), torch.randn(1, 2, 1, 8), 0)
    assert keys.data_ptr() != base and cache.layers[0]._store[0].shape[-2] == capacity + 1 + capacity // 2
    assert torch.equal(keys[:, :, :600], k)


def test_rejects_a_different_batch():
    cache = GrowingCache()
    cache.update(torch.randn(2, 2, 3, 8), torch.randn(2, 2, 3, 8), 0)
    with pytest.raises(ValueError, match="batch and heads"):
        cache.update(torch.randn(1, 2, 1, 8), torch.randn(1, 2, 1, 8), 0)


@pytest.mark.parametrize("sliding", [False, True])
@pytest.mark.parametrize("beams", [1, 3])
def test_generate_gives_dynamic_cache_tokens(sliding, beams):
    model = tiny_llama(sliding)
    ids = torch.randint(0, 96, (2, 13), generator=torch.Generator().manual_seed(1))
    common = dict(max_new_tokens=20, do_sample=False, num_beams=beams, pad_token_id=0)
    want = model.generate(ids, past_key_values=DynamicCache(config=model.config), **common)
    cache = GrowingCache(config=model.config)
    got = model.generate(ids, past_key_values=cache, **common)
    assert torch.equal(got, want)
    kinds = {type(layer).__name__ for layer in cache.layers}
    assert kinds == ({"GrowingLayer", "DynamicSlidingWindowLayer"} if sliding else {"GrowingLayer"})


def test_crop_and_reset_then_continue():
    model = tiny_llama()
    ids = torch.randint(0, 96, (1, 30), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        grown, dynamic = GrowingCache(config=model.config), DynamicCache(config=model.config)
        for cache in (grown, dynamic):
            model(ids, past_key_values=cache, use_cache=True)
            cache.crop(-10)  # back to 20 tokens
            model(ids[:, 20:25], past_key_values=cache, use_cache=True)
        for a, b in zip(grown.layers, dynamic.layers):
            assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)
        grown.reset()
        assert grown.get_seq_length() == 0
        out = model(ids[:, :5], past_key_values=grown, use_cache=True)
        ref = model(ids[:, :5], use_cache=False)
        torch.testing.assert_close(out.logits, ref.logits)


def test_from_existing_data_and_quest_cache_is_growing():
    k = torch.randn(1, 2, 5, 8)
    cache = GrowingCache(ddp_cache_data=[(k, k)])
    assert isinstance(cache.layers[0], GrowingLayer) and torch.equal(cache.layers[0].keys, k)
    cache.update(torch.randn(1, 2, 1, 8), torch.randn(1, 2, 1, 8), 0)
    assert cache.get_seq_length() == 6
    quest = QuestCache(page_size=16)
    keys, _ = quest.update(torch.randn(1, 2, 19, 8), torch.randn(1, 2, 19, 8), 0)
    assert isinstance(quest.layers[0], GrowingLayer) and keys._sparsecore_page_bounds.length == 19

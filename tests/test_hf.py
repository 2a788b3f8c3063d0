"""sparsify_ on a HuggingFace Llama (tiny, random, tied embeddings): calibrated pruning, generate,
torch.compile, bf16, and compressed save/load that reproduces the outputs exactly."""

import os

import pytest
import torch

import sparsecore
from sparsecore.nn import SparseLinear

transformers = pytest.importorskip("transformers")


def tiny_llama(tie=True, seed=0):
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                                      tie_word_embeddings=tie)
    return transformers.LlamaForCausalLM(config).eval()


def calibration(gen, n=4, length=24):
    return [{"input_ids": torch.randint(0, 96, (1, length), generator=gen), "use_cache": False} for _ in range(n)]


CONFIGS = {
    "magnitude": lambda cal: sparsecore.MagnitudeConfig(sparsity=0.5, fallback_to_dense=False),
    "wanda-50": lambda cal: sparsecore.WandaConfig(sparsity=0.5, calibration=cal, fallback_to_dense=False,
                                                    progress=False),
    "wanda-2:4-owl": lambda cal: sparsecore.WandaConfig(pattern="2:4", calibration=cal, fallback_to_dense=False,
                                                         progress=False),
    "sparsegpt-owl": lambda cal: sparsecore.SparseGPTConfig(sparsity=0.6, allocation="owl", calibration=cal,
                                                             fallback_to_dense=False, progress=False),
    "sparsegpt-4:8": lambda cal: sparsecore.SparseGPTConfig(pattern="4:8", calibration=cal, fallback_to_dense=False,
                                                             progress=False),
    "sparsegpt-block": lambda cal: sparsecore.SparseGPTConfig(pattern="block16x16", calibration=cal,
                                                               fallback_to_dense=False, progress=False),
}


@pytest.mark.parametrize("method", list(CONFIGS))
def test_sparsify_generate_and_roundtrip(method, gen, tmp_path):
    model = tiny_llama()
    embed_before = model.model.embed_tokens.weight.detach().clone()
    report = sparsecore.sparsify_(model, CONFIGS[method](calibration(gen)))
    assert len(report.layers) == 7 * 3  # q k v o gate up down in each block; lm_head left alone
    mean = sum(r.sparsity for r in report.layers) / len(report.layers)
    assert mean == pytest.approx(0.6 if "owl" in method and "sparsegpt" in method else 0.5, abs=0.01)
    assert all(isinstance(model.get_submodule(r.name), SparseLinear) for r in report.layers)
    assert torch.equal(model.model.embed_tokens.weight, embed_before)  # tied embedding untouched
    assert model.lm_head.weight is model.model.embed_tokens.weight
    ids = torch.randint(0, 96, (2, 10), generator=gen)
    out = model.generate(ids, max_new_tokens=5, do_sample=False, pad_token_id=0)
    assert out.shape == (2, 15)
    with torch.no_grad():
        logits = model(ids).logits
    path = os.path.join(tmp_path, "model.safetensors")
    sparsecore.save_sparse(model, path)
    fresh = tiny_llama(seed=1)
    sparsecore.load_sparse(fresh, path)
    assert fresh.lm_head.weight.data_ptr() == fresh.model.embed_tokens.weight.data_ptr()
    with torch.no_grad():
        assert torch.equal(fresh(ids).logits, logits)


def test_sparse_model_is_smaller_on_disk(gen, tmp_path):
    model = tiny_llama(tie=False)
    config = transformers.LlamaConfig(**{**model.config.to_dict(), "hidden_size": 256, "intermediate_size": 512})
    model = transformers.LlamaForCausalLM(config).eval()
    dense_path = os.path.join(tmp_path, "dense.safetensors")
    sparse_path = os.path.join(tmp_path, "sparse.safetensors")
    sparsecore.save_sparse(model, dense_path)
    sparsecore.sparsify_(model, sparsecore.MagnitudeConfig(sparsity=0.5, fallback_to_dense=False))
    sparsecore.save_sparse(model, sparse_path)
    linear_params = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, SparseLinear))
    saved = os.path.getsize(dense_path) - os.path.getsize(sparse_path)
    # 4 bytes -> 2 bytes of values + 1/8 byte of bitmap per weight
    assert saved == pytest.approx(linear_params * (4 - 2 - 0.125), rel=0.01)


def test_bf16_and_compile(gen):
    model = tiny_llama()
    sparsecore.sparsify_(model, sparsecore.WandaConfig(sparsity=0.5, calibration=calibration(gen),
                                                       fallback_to_dense=False, progress=False))
    ids = torch.randint(0, 96, (1, 12), generator=gen)
    with torch.no_grad():
        ref = model(ids).logits
        model16 = model.to(torch.bfloat16)
        assert model16.model.layers[0].mlp.up_proj.weight.dtype == torch.bfloat16
        low = model16(ids).logits.float()
        assert (low - ref).abs().max() < 0.05 * ref.abs().max()
        model.to(torch.float32)
        # The whole HF model compiles as one graph: the sparse ops have fake kernels, no graph breaks.
        compiled = torch.compile(model, fullgraph=True)
        torch.testing.assert_close(compiled(ids).logits, model(ids).logits)


def test_bad_input(gen, tmp_path):
    model = tiny_llama()
    with pytest.raises(ValueError, match="calibration"):
        sparsecore.sparsify_(model, sparsecore.WandaConfig(sparsity=0.5))
    with pytest.raises(ValueError, match="multiple of 7"):
        sparsecore.sparsify_(model, sparsecore.WandaConfig(pattern="3:7", calibration=calibration(gen)))
    with pytest.raises(ValueError, match="sparsity"):
        sparsecore.sparsify_(model, sparsecore.SparseGPTConfig(sparsity=1.5, calibration=calibration(gen)))
    with pytest.raises(ValueError, match="unknown sparsity allocation"):
        sparsecore.sparsify_(model, sparsecore.WandaConfig(allocation="best", calibration=calibration(gen)))
    assert not any(isinstance(m, SparseLinear) for m in model.modules())  # nothing changed
    assert float((model.model.layers[0].mlp.up_proj.weight == 0).float().mean()) == 0.0
    with pytest.raises(ValueError, match="cannot find the repeated blocks"):
        sparsecore.sparsify_(torch.nn.Sequential(torch.nn.Linear(4, 4)),
                             sparsecore.WandaConfig(calibration=[torch.randn(1, 4)]))
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50))
    with pytest.raises(ValueError, match="Conv1D"):
        sparsecore.sparsify_(gpt2, sparsecore.WandaConfig(calibration=[torch.zeros(1, 4, dtype=torch.long)]))


HEAD_CONFIGS = {
    "magnitude": lambda cal: sparsecore.MagnitudeConfig(sparsity=0.5, fallback_to_dense=False, lm_head=True),
    "nm-fallback": lambda cal: sparsecore.NMConfig(lm_head=True),  # layers may fall back to dense
    "wanda": lambda cal: sparsecore.WandaConfig(sparsity=0.5, calibration=cal, fallback_to_dense=False,
                                                progress=False, lm_head=True),
    "sparsegpt-2:4": lambda cal: sparsecore.SparseGPTConfig(pattern="2:4", calibration=cal, fallback_to_dense=False,
                                                            progress=False, lm_head=True),
}


@pytest.mark.parametrize("method", list(HEAD_CONFIGS))
def test_prune_tied_lm_head(method, gen, tmp_path):
    """lm_head=True prunes the output embedding too: untied from the input embedding (which
    keeps its dense weights), recorded in the config and the report, saved and loaded apart."""
    from sparsecore.models.pruned_dir import load_pruned, save_pruned

    model = tiny_llama()
    embed_before = model.model.embed_tokens.weight.detach().clone()
    report = sparsecore.sparsify_(model, HEAD_CONFIGS[method](calibration(gen)))
    assert len(report.layers) == 7 * 3 + 1 and report.layers[-1].name == "lm_head"
    assert report.layers[-1].sparsity == pytest.approx(0.5, abs=0.01)
    assert any("lm_head" in n and "untied" in n for n in report.notes) and "note: lm_head" in str(report)
    assert model.config.tie_word_embeddings is False
    assert torch.equal(model.model.embed_tokens.weight, embed_before)  # the embedding is not pruned
    head = model.lm_head
    head_w = head.weight.detach() if isinstance(head.weight, torch.Tensor) else head.weight.to_dense()
    assert float((head_w == 0).float().mean()) == pytest.approx(0.5, abs=0.01)
    if method == "magnitude":  # the kept entries are the tied weights' own values
        kept = head_w != 0
        assert torch.equal(head_w[kept], embed_before[kept])
    ids = torch.randint(0, 96, (2, 10), generator=gen)
    with torch.no_grad():
        logits = model(ids).logits
        hidden = model.model(ids).last_hidden_state
        torch.testing.assert_close(logits, hidden @ head_w.T, rtol=1e-5, atol=1e-5)
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=_tiny_tokenizer())
    save_pruned(model, tokenizer, os.path.join(tmp_path, "m"), {"method": method})
    loaded, _ = load_pruned(os.path.join(tmp_path, "m"))
    assert loaded.lm_head.weight is not loaded.model.embed_tokens.weight
    with torch.no_grad():
        if method == "nm-fallback":
            # The kernel choice is timed: a layer may run dense in one model and on the N:M
            # kernel in the other, which sums in another order (fp32 rounding only).
            torch.testing.assert_close(loaded(ids).logits, logits, rtol=1e-5, atol=1e-5)
        else:
            assert torch.equal(loaded(ids).logits, logits)


def _tiny_tokenizer():
    from tokenizers import Tokenizer, models
    return Tokenizer(models.WordLevel({f"t{i}": i for i in range(96)}, unk_token="t0"))


def test_prune_lm_head_failure_leaves_model_tied(gen, monkeypatch):
    import sparsecore.sparsify as sp

    model = tiny_llama()
    state = {k: v.clone() for k, v in model.state_dict().items()}

    def boom(*args, **kwargs):
        raise RuntimeError("head pruning failed")

    monkeypatch.setattr(sp, "_prune_head_calibrated", boom)
    with pytest.raises(RuntimeError, match="head pruning failed"):
        sparsecore.sparsify_(model, sparsecore.WandaConfig(sparsity=0.5, calibration=calibration(gen),
                                                           progress=False, lm_head=True))
    assert model.lm_head.weight is model.model.embed_tokens.weight and model.config.tie_word_embeddings
    assert not any(isinstance(m, SparseLinear) for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    with pytest.raises(ValueError, match="no nn.Linear output embedding"):
        sparsecore.sparsify_(torch.nn.Sequential(torch.nn.Linear(8, 8)), sparsecore.MagnitudeConfig(lm_head=True))


def test_profile_families_and_dense_twin(gen):
    from sparsecore.models.profile import FAMILIES, dense_twin, format_profile, module_families, profile_model

    model = tiny_llama()
    sparsecore.sparsify_(model, sparsecore.MagnitudeConfig(sparsity=0.5, fallback_to_dense=False, lm_head=True))
    fam = module_families(model)
    assert fam[model.lm_head] == "lm_head" and fam[model.model.embed_tokens] == "embedding"
    assert fam[model.model.layers[0].self_attn.q_proj] == "linears" and fam[model.model.norm] == "norms"
    assert fam[model.model.layers[0].self_attn] == "attention" and fam[model.model.layers[0].mlp] == "mlp elementwise"
    twin = dense_twin(model)
    assert not any(isinstance(m, SparseLinear) for m in twin.modules())
    assert any(isinstance(m, SparseLinear) for m in model.modules())  # the original is untouched
    ids = torch.randint(0, 96, (1, 12), generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(twin(ids).logits, model(ids).logits, rtol=1e-5, atol=1e-5)
    prof = profile_model(model, ids, decode_steps=3, prefill_repeats=1, top_ops=4)
    for phase in ("decode", "prefill"):
        p = prof[phase]
        assert set(p) == set(FAMILIES) | {"total"}
        assert all(p[f] >= 0 for f in FAMILIES if f != "other") and p["linears"] > 0 and p["lm_head"] > 0
        assert sum(p[f] for f in FAMILIES) == pytest.approx(p["total"])
    assert 0 < len(prof["top_ops"]) <= 4
    text = format_profile({"dense twin": profile_model(twin, ids, decode_steps=2, prefill_repeats=1), "sparse": prof})
    assert "| lm_head |" in text and "dense twin" in text
    with pytest.raises(ValueError, match="prompt"):
        profile_model(model, torch.zeros(5, dtype=torch.long))

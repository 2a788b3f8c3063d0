"""SparseLinear's format tensors are real buffers: state_dict round trips, copies, pickling,
device and dtype moves, and HF save_pretrained all keep the pruned weights."""

import copy
import io
import pickle

import pytest
import torch
from torch import nn

import sparsecore
from sparsecore import BlockConfig, MagnitudeConfig, NMConfig
from sparsecore.nn import SparseLinear

CONFIGS = {
    "csr": MagnitudeConfig(sparsity=0.6, fallback_to_dense=False),
    "csr-bitmap": MagnitudeConfig(sparsity=0.4, fallback_to_dense=False),
    "bsr": BlockConfig(sparsity=0.5, blocksize=(8, 8), fallback_to_dense=False, format="bsr"),
    "nm": NMConfig(n=2, m=4, fallback_to_dense=False, format="nm"),
}


def net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(32, 48), nn.ReLU(), nn.Linear(48, 16, bias=False))


def sparse_net(name, seed=0):
    model = net(seed)
    sparsecore.sparsify_(model, CONFIGS[name])
    assert all(isinstance(model[i], SparseLinear) for i in (0, 2))
    return model


@pytest.mark.parametrize("name", list(CONFIGS))
def test_state_dict_round_trip(name):
    model = sparse_net(name)
    state = model.state_dict()
    assert any(k.endswith("weight_values") for k in state) and "0.weight_layout" in state
    x = torch.randn(5, 32)
    want = model(x)
    # Into a model with the same SparseLinear layout (different values).
    other = sparse_net(name)
    with torch.no_grad():
        other[0].bias.add_(1.0)
    other.load_state_dict(state)
    torch.testing.assert_close(other(x), want, rtol=0, atol=0)
    # Into a fresh dense model: the sparse layers are rebuilt from the state.
    fresh = sparsecore.load_sparse_state_dict(net(seed=1), state)
    assert isinstance(fresh[0], SparseLinear)
    torch.testing.assert_close(fresh(x), want, rtol=0, atol=0)
    # torch.save of the state dict (what users do first)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    again = sparsecore.load_sparse_state_dict(net(seed=2), torch.load(buf, weights_only=True))
    torch.testing.assert_close(again(x), want, rtol=0, atol=0)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_copies_pickles_and_moves(name):
    model = sparse_net(name)
    x = torch.randn(3, 32)
    want = model(x)
    deep = copy.deepcopy(model)
    torch.testing.assert_close(deep(x), want, rtol=0, atol=0)
    assert deep[0].weight.values.data_ptr() != model[0].weight.values.data_ptr()
    restored = pickle.loads(pickle.dumps(model))  # DataLoader workers, multiprocessing
    torch.testing.assert_close(restored(x), want, rtol=0, atol=0)
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    torch.testing.assert_close(loaded(x), want, rtol=0, atol=0)
    half = copy.deepcopy(model).half()
    assert half[0].weight.dtype == torch.float16 and half[0].weight_values.dtype == torch.float16
    torch.testing.assert_close(half(x.half()).float(), want, rtol=2e-2, atol=2e-2)
    assert half[0].weight_layout.dtype == torch.int64  # integers are never converted
    bf = copy.deepcopy(model).to(torch.bfloat16).to("cpu")
    torch.testing.assert_close(bf(x.bfloat16()).float(), want, rtol=5e-2, atol=5e-2)


def test_load_state_dict_rejects_bad_parts_and_keeps_the_model():
    model = sparse_net("csr")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["0.weight_col_idx"][0] = 40  # a column past the 32 inputs
    fresh = net(seed=3)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(ValueError, match="out of range|sparse layer"):
        sparsecore.load_sparse_state_dict(fresh, state)
    assert isinstance(fresh[0], nn.Linear)
    assert all(torch.equal(before[k], v) for k, v in fresh.state_dict().items())
    other = sparse_net("csr")
    with pytest.raises(RuntimeError, match="out of range"):
        other.load_state_dict(state)
    layout = {k: v.clone() for k, v in model.state_dict().items()}
    layout["0.weight_layout"][0] = 2  # claims N:M
    with pytest.raises(RuntimeError, match="layout"):
        sparse_net("csr").load_state_dict(layout)


def test_hf_save_pretrained_round_trip(tmp_path):
    transformers = pytest.importorskip("transformers")
    from safetensors.torch import load_file

    def tiny(seed):
        torch.manual_seed(seed)
        config = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                          num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
        return transformers.LlamaForCausalLM(config).eval()

    model = tiny(0)
    sparsecore.sparsify_(model, MagnitudeConfig(sparsity=0.5, fallback_to_dense=False))
    ids = torch.randint(0, 64, (1, 9))
    want = model(ids).logits
    model.save_pretrained(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    assert "model.layers.0.mlp.down_proj.weight_values" in state
    fresh = sparsecore.load_sparse_state_dict(tiny(1), state, strict=False)
    torch.testing.assert_close(fresh(ids).logits, want, rtol=0, atol=0)

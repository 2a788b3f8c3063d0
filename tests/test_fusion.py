"""Fused projections (q/k/v, gate/up as one stacked sparse layer): found from one forward pass,
outputs bit-identical to the separate layers, unfused state dict, save/load, copies."""

import copy

import pytest
import torch

import sparsecore
from sparsecore.nn import ProjectionSlice, SparseLinear

transformers = pytest.importorskip("transformers")


def tiny_llama(seed=0, bias=False):
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, attention_bias=bias)
    return transformers.LlamaForCausalLM(config).eval()


def pruned(config, seed=0, bias=False):
    model = tiny_llama(seed, bias)
    sparsecore.sparsify_(model, config)
    return model


CONFIGS = [sparsecore.MagnitudeConfig(sparsity=0.6, fallback_to_dense=False, format="csr"),
           sparsecore.NMConfig(fallback_to_dense=False),
           sparsecore.BlockConfig(sparsity=0.5, blocksize=(16, 16), fallback_to_dense=False)]


@pytest.mark.parametrize("config", CONFIGS, ids=["csr", "nm", "bsr"])
@pytest.mark.parametrize("bias", [False, True])
def test_fused_outputs_are_the_separate_outputs(config, bias):
    model = pruned(config, bias=bias)
    ids = torch.randint(0, 96, (2, 11))
    with torch.no_grad():
        ref = model(ids).logits
    fused = copy.deepcopy(model)
    groups = sparsecore.fuse_projections_(fused)
    assert sorted(tuple(g.names) for g in groups) == sorted([("q_proj", "k_proj", "v_proj")] * 2
                                                            + [("gate_proj", "up_proj")] * 2)
    stacked = fused.model.layers[0].self_attn.q_proj.group.fused
    assert isinstance(stacked, SparseLinear) and stacked.out_features == 64 + 32 + 32
    kinds = {type(getattr(model.model.layers[0].self_attn, n).weight) for n in ("q_proj", "k_proj", "v_proj")}
    assert type(stacked.weight) is (kinds.pop() if len(kinds) == 1 else sparsecore.CSR)  # members' format if shared
    with torch.no_grad():
        got, one, want_one = fused(ids).logits, fused(ids[:, :1]).logits, model(ids[:, :1]).logits
    if config is CONFIGS[0]:
        # CSR: the same entries of each row summed in the same order, bit for bit.
        assert torch.equal(got, ref) and torch.equal(one, want_one)
    else:
        # The N:M and BSR kernels tile the output rows, so the stacked layer may sum in
        # another order: fp32 rounding only (logits are O(0.1-1)).
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(one, want_one, rtol=1e-5, atol=1e-6)


def test_members_called_alone_or_out_of_order_are_still_right():
    model = pruned(CONFIGS[0])
    attn = model.model.layers[0].self_attn
    x = torch.randn(3, 64)
    with torch.no_grad():
        want = [attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)]
    sparsecore.fuse_projections_(model)
    attn = model.model.layers[0].self_attn
    with torch.no_grad():
        close = dict(rtol=1e-6, atol=1e-6)  # the stacked layer may tile rows differently: rounding only
        torch.testing.assert_close(attn.v_proj(x), want[2], **close)            # alone, last member first
        torch.testing.assert_close(attn.k_proj(x.clone()), want[1], **close)    # another tensor object
        y = x.clone()
        q = attn.q_proj(y)
        y.mul_(2)                                                # changed in place after q read it
        torch.testing.assert_close(attn.k_proj(y), 2 * want[1], **close)
        torch.testing.assert_close(q, want[0], **close)
        assert torch.equal(attn.q_proj(x), attn.q_proj(x))      # the same member twice
    assert not attn.q_proj.group._pending or all(len(e[3]) < 3 for e in attn.q_proj.group._pending.values())


def test_state_dict_is_the_unfused_one_and_loads_into_a_plain_model(tmp_path):
    model = pruned(CONFIGS[0], bias=True)
    keys = model.state_dict()
    sparsecore.fuse_projections_(model)
    state = model.state_dict()
    assert set(state) == set(keys)
    for k, v in keys.items():
        assert torch.equal(state[k], v), k
    fresh = sparsecore.load_sparse_state_dict(tiny_llama(1, bias=True), state)
    ids = torch.randint(0, 96, (1, 7))
    with torch.no_grad():
        fused_logits = model(ids).logits
        torch.testing.assert_close(fresh(ids).logits, fused_logits, rtol=1e-5, atol=1e-6)
    path = str(tmp_path / "m.safetensors")
    sparsecore.save_sparse(model, path)
    assert any(isinstance(m, ProjectionSlice) for m in model.modules())  # still fused after saving
    loaded = sparsecore.load_sparse(tiny_llama(2, bias=True), path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, fused_logits, rtol=1e-5, atol=1e-6)


def test_loading_into_a_fused_model_is_refused_and_unfuse_restores():
    model = pruned(CONFIGS[0])
    state = model.state_dict()
    sparsecore.fuse_projections_(model)
    with pytest.raises(RuntimeError, match="unfuse_projections_"):
        model.load_state_dict(state)
    ids = torch.randint(0, 96, (1, 5))
    with torch.no_grad():
        before = model(ids).logits
    assert sparsecore.unfuse_projections_(model) == 10
    assert not any(isinstance(m, ProjectionSlice) for m in model.modules())
    with torch.no_grad():
        assert torch.equal(model(ids).logits, before)
    model.load_state_dict(state)


def test_copies_and_dtype_moves_keep_one_shared_stacked_layer():
    model = pruned(CONFIGS[1])
    sparsecore.fuse_projections_(model)
    twin = copy.deepcopy(model).to(torch.bfloat16)
    attn = twin.model.layers[0].self_attn
    assert attn.k_proj.group is attn.q_proj.group and attn.q_proj.group is not model.model.layers[0].self_attn.q_proj.group
    assert attn.q_proj.group.fused.weight.dtype == torch.bfloat16
    ids = torch.randint(0, 96, (1, 6))
    with torch.no_grad():
        ref = model.to(torch.bfloat16)(ids).logits
        assert torch.equal(twin(ids).logits, ref)


def test_no_groups_without_an_example_input_or_shared_inputs():
    seq = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 8))
    sparsecore.sparsify_(seq, sparsecore.MagnitudeConfig(sparsity=0.5, fallback_to_dense=False))
    assert sparsecore.fuse_projections_(seq) == []
    assert sparsecore.fuse_projections_(seq, example_inputs=torch.randn(2, 8)) == []  # chained, not shared


# --------------------------------------------------------------- fusion inside the kernel choice
def _magnitude(fuse_projections=True, **kw):
    return sparsecore.MagnitudeConfig(sparsity=0.6, format="csr", fuse_projections=fuse_projections, **kw)


def test_sparsify_fuses_and_judges_each_stacked_layer_once():
    ids = torch.randint(0, 96, (1, 9))
    plain = pruned(_magnitude(fallback_to_dense=False))
    model = tiny_llama()
    report = sparsecore.sparsify_(model, _magnitude(fallback_to_dense=False))
    names = [r.name for r in report.layers]
    assert "model.layers.0.self_attn.q_proj+k_proj+v_proj" in names and "model.layers.1.mlp.gate_proj+up_proj" in names
    assert len(names) == 2 * 4  # per block: q+k+v, o, gate+up, down
    assert isinstance(model.model.layers[0].self_attn.k_proj, ProjectionSlice)
    with torch.no_grad():
        assert torch.equal(model(ids).logits, plain(ids).logits)  # CSR: the same sums, bit for bit


def test_stacked_layer_falls_back_to_dense_as_one(monkeypatch):
    from sparsecore import kernel_choice

    real = kernel_choice._interleaved_times

    def dense_always_faster(variants, inputs, reps=5):
        times = real(variants, inputs, reps=1)
        return [[0.0 if t is not None else None for t in times[0]]] + times[1:]

    monkeypatch.setattr(kernel_choice, "_interleaved_times", dense_always_faster)
    ids = torch.randint(0, 96, (1, 9))
    plain = pruned(_magnitude(fuse_projections=False))  # every layer dense, separately
    model = tiny_llama()
    report = sparsecore.sparsify_(model, _magnitude())
    assert all(r.format == "dense (fallback)" for r in report.layers)
    group = model.model.layers[0].self_attn.q_proj.group
    assert isinstance(group.fused, torch.nn.Linear) and group.fused.out_features == 128
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, plain(ids).logits, rtol=1e-5, atol=1e-6)
    sd, want = model.state_dict(), plain.state_dict()
    assert sd.keys() == want.keys() and all(torch.equal(sd[k], want[k]) for k in sd)


def test_select_kernels_fuses_a_loaded_model(tmp_path):
    model = pruned(_magnitude(fallback_to_dense=False))
    path = str(tmp_path / "m.safetensors")
    sparsecore.save_sparse(model, path)
    loaded = sparsecore.load_sparse(tiny_llama(), path)
    report = sparsecore.select_kernels_(loaded, fallback_to_dense=False, fuse_projections=True)
    assert sum("+" in r.name for r in report.layers) == 4
    ids = torch.randint(0, 96, (2, 7))
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)
    again = sparsecore.select_kernels_(loaded, fallback_to_dense=False, fuse_projections=True)  # already fused: judged as is
    assert [r.name for r in again.layers] == [r.name for r in report.layers]
    plain = sparsecore.load_sparse(tiny_llama(), path)
    assert all("+" not in r.name for r in sparsecore.select_kernels_(plain).layers)


def test_activation_sparsity_unfuses_first_and_matches_the_unfused_path():
    from sparsecore.activation import ActSparseLinear

    calib = [{"input_ids": torch.randint(0, 96, (1, 16), generator=torch.Generator().manual_seed(i))} for i in range(2)]
    teal = sparsecore.TEALConfig(0.5, calibration=calib, allocation="uniform", progress=False)
    fused = pruned(_magnitude(fallback_to_dense=False))
    plain = pruned(_magnitude(fallback_to_dense=False))
    sparsecore.sparsify_(fused, teal)
    sparsecore.sparsify_(plain, teal)
    assert not any(isinstance(m, ProjectionSlice) for m in fused.modules())
    assert isinstance(fused.model.layers[0].self_attn.k_proj, ActSparseLinear)
    ids = torch.randint(0, 96, (1, 9))
    with torch.no_grad():
        assert torch.equal(fused(ids).logits, plain(ids).logits)


def test_export_of_a_fused_model_loads_in_transformers(tmp_path):
    from sparsecore.models.interop import export_pretrained
    from sparsecore.models import smollm2_gguf

    model = pruned(_magnitude(fallback_to_dense=False))
    assert isinstance(model.model.layers[0].self_attn.v_proj, ProjectionSlice)
    directory, name = smollm2_gguf()
    tok = transformers.AutoTokenizer.from_pretrained(directory, gguf_file=name)
    out = str(tmp_path / "export")
    export_pretrained(model, tok, out)
    back = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    ids = torch.randint(0, 96, (1, 9))
    with torch.no_grad():
        torch.testing.assert_close(back(ids).logits, model(ids).logits, rtol=1e-5, atol=1e-5)
    assert isinstance(model.model.layers[0].self_attn.v_proj, ProjectionSlice)  # the model itself unchanged


def test_fused_model_compiles_as_one_graph():
    model = pruned(_magnitude(fallback_to_dense=False))
    ids = torch.randint(0, 96, (1, 9))
    with torch.no_grad():
        ref = model(ids).logits
        torch.testing.assert_close(torch.compile(model, fullgraph=True)(ids).logits, ref, rtol=1e-5, atol=1e-5)

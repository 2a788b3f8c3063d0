"""Export to a plain HF checkpoint and load of already-pruned HF checkpoints (issue 15)."""

import json
import os

import pytest
import torch

import sparsecore
from sparsecore.models.interop import detect_pattern, export_pretrained, load_pretrained, sparsify_pruned_
from sparsecore.nn import SparseLinear

transformers = pytest.importorskip("transformers")

from test_hf import _tiny_tokenizer, calibration, tiny_llama  # noqa: E402


def _tokenizer():
    return transformers.PreTrainedTokenizerFast(tokenizer_object=_tiny_tokenizer())


def _pruned(config, gen, tie=True):
    model = tiny_llama(tie=tie)
    sparsecore.sparsify_(model, config)
    return model


PRUNINGS = {
    "50%": lambda gen: sparsecore.MagnitudeConfig(sparsity=0.5, fallback_to_dense=False),
    "2:4": lambda gen: sparsecore.NMConfig(n=2, m=4, fallback_to_dense=False),
    "4:8-sparsegpt": lambda gen: sparsecore.SparseGPTConfig(pattern="4:8", calibration=calibration(gen),
                                                            fallback_to_dense=False, progress=False),
    "50%+head": lambda gen: sparsecore.MagnitudeConfig(sparsity=0.5, fallback_to_dense=False, lm_head=True),
}
# N:M layers run in the N:M kernel or as CSR, whichever measured faster; unstructured as CSR.
EXPECTED_FORMATS = {"50%": {"CSR"}, "2:4": {"NM", "CSR"}, "4:8-sparsegpt": {"NM", "CSR"}, "50%+head": {"CSR"}}


@pytest.mark.parametrize("kind", list(PRUNINGS))
@pytest.mark.parametrize("save_dtype", [None, torch.bfloat16])
def test_export_reads_back_in_transformers_and_sparsecore(kind, save_dtype, gen, tmp_path):
    model = _pruned(PRUNINGS[kind](gen), gen)
    ids = torch.randint(0, 96, (2, 11), generator=gen)
    with torch.no_grad():
        want = model(ids).logits
    out = os.path.join(tmp_path, "export")
    size = export_pretrained(model, _tokenizer(), out, dtype=save_dtype)
    assert size == sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    assert json.load(open(os.path.join(out, "sparsecore-export.json")))["files_written"]
    assert isinstance(model.model.layers[0].mlp.up_proj, SparseLinear)  # the source model is untouched

    # transformers reads it as any checkpoint: the same logits (bf16: to bf16 rounding).
    hf = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    with torch.no_grad():
        got = hf(ids).logits
    tol = dict(rtol=0, atol=1e-5) if save_dtype is None else dict(rtol=0.05, atol=0.08)
    torch.testing.assert_close(got, want, **tol)
    zeros = (hf.model.layers[1].self_attn.q_proj.weight == 0).float().mean().item()
    assert zeros == pytest.approx(0.5, abs=0.02)  # the zeros are in the file

    # sparsecore finds the pruned layers again, in the format the pattern runs in.
    loaded, _ = load_pretrained(out, fallback_to_dense=False)
    layers = [m for m in loaded.modules() if isinstance(m, SparseLinear)]
    assert {type(m.weight).__name__ for m in layers} <= EXPECTED_FORMATS[kind]
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, got, rtol=1e-5, atol=1e-5)
    if kind == "50%+head":
        assert loaded.config.tie_word_embeddings is False
        assert not torch.equal(hf.lm_head.weight, hf.model.embed_tokens.weight)


def test_bf16_export_is_half_the_size(gen, tmp_path):
    model = _pruned(PRUNINGS["2:4"](gen), gen)
    a = export_pretrained(model, _tokenizer(), os.path.join(tmp_path, "f32"))
    b = export_pretrained(model, _tokenizer(), os.path.join(tmp_path, "bf16"), dtype=torch.bfloat16)
    assert b < 0.6 * a


def test_detect_pattern():
    torch.manual_seed(0)
    w = torch.randn(32, 64)
    assert detect_pattern(w) is None  # dense
    keep = w.abs().reshape(32, 16, 4).argsort(dim=2)[..., 2:]
    mask = torch.zeros(32, 16, 4, dtype=torch.bool).scatter_(2, keep, True).reshape(32, 64)
    assert detect_pattern(w * mask).nm == (2, 4)
    keep8 = w.abs().reshape(32, 8, 8).argsort(dim=2)[..., 5:]
    mask8 = torch.zeros(32, 8, 8, dtype=torch.bool).scatter_(2, keep8, True).reshape(32, 64)
    assert detect_pattern(w * mask8).nm == (3, 8)
    unstructured = w * (torch.rand(32, 64) > 0.6)
    p = detect_pattern(unstructured)
    assert p.nm is None and p.sparsity == pytest.approx((unstructured == 0).float().mean().item())
    assert detect_pattern(w * (torch.rand(32, 64) > 0.9), min_sparsity=0.95) is None
    with pytest.raises(ValueError, match="2-D"):
        detect_pattern(torch.zeros(4))


def test_dense_checkpoint_stays_dense(gen, tmp_path):
    model = tiny_llama()
    model.save_pretrained(os.path.join(tmp_path, "dense"))
    _tokenizer().save_pretrained(os.path.join(tmp_path, "dense"))
    loaded, _ = load_pretrained(os.path.join(tmp_path, "dense"), fallback_to_dense=False)
    assert not any(isinstance(m, SparseLinear) for m in loaded.modules())


def test_sparsify_pruned_restores_on_failure(gen, monkeypatch):
    import sparsecore.kernel_choice as sp

    model = _pruned(PRUNINGS["50%"](gen), gen)
    from sparsecore.models.profile import dense_twin

    dense = dense_twin(model)
    before = {n: type(m) for n, m in dense.named_modules()}

    def boom(*args, **kwargs):
        raise RuntimeError("timing failed")

    monkeypatch.setattr(sp, "_choose_kernels", boom)
    with pytest.raises(RuntimeError, match="timing failed"):
        sparsify_pruned_(dense)
    assert {n: type(m) for n, m in dense.named_modules()} == before
    with pytest.raises(ValueError, match="min_sparsity"):
        sparsify_pruned_(dense, min_sparsity=1.5)


def test_export_refuses_foreign_directory_and_bad_args(gen, tmp_path):
    model = _pruned(PRUNINGS["50%"](gen), gen)
    mine = os.path.join(tmp_path, "mine")
    os.makedirs(mine)
    open(os.path.join(mine, "notes.txt"), "w").write("keep me")
    with pytest.raises(ValueError, match="not empty"):
        export_pretrained(model, _tokenizer(), mine, overwrite=True)
    assert os.listdir(mine) == ["notes.txt"]
    with pytest.raises(TypeError, match="dtype"):
        export_pretrained(model, _tokenizer(), os.path.join(tmp_path, "x"), dtype=torch.int8)
    with pytest.raises(TypeError, match="transformers model"):
        export_pretrained(torch.nn.Linear(4, 4), _tokenizer(), os.path.join(tmp_path, "y"))
    assert not os.path.exists(os.path.join(tmp_path, "x")) and not os.path.exists(os.path.join(tmp_path, "y"))
    out = os.path.join(tmp_path, "out")
    export_pretrained(model, _tokenizer(), out)
    with pytest.raises(ValueError, match="--overwrite"):
        export_pretrained(model, _tokenizer(), out)
    export_pretrained(model, _tokenizer(), out, overwrite=True)  # our own export may be replaced


def test_legacy_sparse_format_is_refused(gen, tmp_path):
    model = tiny_llama()
    d = os.path.join(tmp_path, "legacy")
    model.save_pretrained(d)
    cfg = json.load(open(os.path.join(d, "config.json")))
    cfg["quantization_config"] = {"quant_method": "compressed-tensors",
                                  "sparsity_config": {"format": "sparse-24-bitmask", "targets": ["Linear"]}}
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
    with pytest.raises(ValueError, match="sparse-24-bitmask.*0.14"):
        load_pretrained(d)
    with pytest.raises(ValueError, match="not a model directory"):
        load_pretrained(os.path.join(tmp_path, "nothing"))


def test_cli_export_and_eval(gen, tmp_path, capsys):
    from sparsecore.cli import main
    from sparsecore.models.pruned_dir import save_pruned

    model = _pruned(PRUNINGS["2:4"](gen), gen)
    pruned = os.path.join(tmp_path, "pruned")
    save_pruned(model, _tokenizer(), pruned, {"method": "nm"})
    out = os.path.join(tmp_path, "hf")
    assert main(["export", "--model", pruned, "--output", out, "--save-dtype", "bf16"]) == 0
    assert "wrote" in capsys.readouterr().out
    hf = transformers.AutoModelForCausalLM.from_pretrained(out)
    assert hf.dtype == torch.bfloat16
    assert main(["export", "--model", pruned, "--output", out, "--format", "compressed-tensors"]) == 2
    assert "removed its sparse formats" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["50%", "2:4", "50%+head"])
def test_save_pretrained_round_trip(kind, gen, tmp_path):
    """HF save_pretrained of a sparsified model stores the compressed parts; load_pretrained
    rebuilds the same sparse layers and logits, and reports the directory's size."""
    model = _pruned(PRUNINGS[kind](gen), gen)
    d = os.path.join(tmp_path, "saved")
    model.save_pretrained(d)
    _tokenizer().save_pretrained(d)
    loaded, _ = load_pretrained(d, fallback_to_dense=False)
    names = {n for n, m in model.named_modules() if isinstance(m, SparseLinear)}
    assert names == {n for n, m in loaded.named_modules() if isinstance(m, SparseLinear)}
    for n in names:
        assert type(loaded.get_submodule(n).weight) is type(model.get_submodule(n).weight)
    ids = torch.randint(0, 96, (2, 9), generator=gen)
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)
    exported = export_pretrained(model, _tokenizer(), os.path.join(tmp_path, "dense"))
    from sparsecore.models.interop import directory_bytes
    assert directory_bytes(d) < exported  # compressed parts, not dense pruned weights


def test_save_pretrained_with_missing_keys_is_refused(gen, tmp_path):
    from safetensors.torch import load_file, save_file

    model = _pruned(PRUNINGS["50%"](gen), gen)
    d = os.path.join(tmp_path, "saved")
    model.save_pretrained(d)
    state = load_file(os.path.join(d, "model.safetensors"))
    state.pop("model.norm.weight")
    save_file(state, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match="missing"):
        load_pretrained(d)

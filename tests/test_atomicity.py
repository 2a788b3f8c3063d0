"""A failing operation leaves the model and the disk as they were; nothing the library did
not write is ever replaced or deleted."""

import os
import stat

import pytest
import torch
from torch import nn

import sparsecore
from sparsecore import BlockConfig, MagnitudeConfig, NMConfig, SparseGPTConfig, TEALConfig, WandaConfig
from sparsecore.models import pruned_dir


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(24, 36), nn.ReLU(), nn.Linear(36, 20))


def snapshot(model):
    return [(n, type(m)) for n, m in model.named_modules()], {k: v.clone() for k, v in model.state_dict().items()}


def assert_unchanged(model, snap):
    mods, state = snap
    assert [(n, type(m)) for n, m in model.named_modules()] == mods
    now = model.state_dict()
    assert set(now) == set(state) and all(torch.equal(now[k], state[k]) for k in state)


def calib():
    return [torch.randn(2, 24) for _ in range(2)]


BAD_CONFIGS = {
    "magnitude format nm": MagnitudeConfig(format="nm"),       # used to mask every weight, then raise
    "magnitude format bsr": MagnitudeConfig(format="bsr"),
    "magnitude sparsity": MagnitudeConfig(sparsity=1.5),
    "magnitude nan": MagnitudeConfig(sparsity=float("nan")),
    "unknown format": MagnitudeConfig(format="coo"),
    "tune tokens": MagnitudeConfig(tune_tokens=0),
    "dtype": MagnitudeConfig(dtype=torch.int8),
    "nm 3:2": NMConfig(n=3, m=2),
    "nm m=5 (in_features 24, 36)": NMConfig(n=2, m=5),
    "nm m=16": NMConfig(n=2, m=16),
    "block shape": BlockConfig(blocksize=(5, 5)),             # 24 x 36 is not a multiple of 5
    "block zero": BlockConfig(blocksize=(0, 4)),
    "wanda no calibration": WandaConfig(calibration=None),
    "wanda empty calibration": WandaConfig(calibration=[]),
    "wanda pattern": WandaConfig(pattern="3:2", calibration=[torch.randn(1, 24)]),
    "wanda allocation": WandaConfig(allocation="best", calibration=[torch.randn(1, 24)]),
    "sparsegpt sparsity": SparseGPTConfig(sparsity=-0.1, calibration=[torch.randn(1, 24)]),
    "teal no calibration": TEALConfig(0.5, calibration=None),
    "teal sparsity": TEALConfig(1.2, calibration=[torch.randn(1, 24)]),
}


@pytest.mark.parametrize("name", list(BAD_CONFIGS))
def test_bad_config_leaves_the_model_unchanged(name):
    model = net()
    snap = snapshot(model)
    with pytest.raises((ValueError, TypeError)):
        sparsecore.sparsify_(model, BAD_CONFIGS[name])
    assert_unchanged(model, snap)


def test_calibrated_failure_midway_restores_the_weights(monkeypatch):
    """SparseGPT updates weights block by block; a failure in the second block (after the
    first block's weights were already updated) must not leave a half-pruned model."""
    import sparsecore.pruning.prune as prune

    model = nn.Sequential(nn.Sequential(nn.Linear(24, 24)), nn.Sequential(nn.Linear(24, 24)))
    snap = snapshot(model)
    real = prune.sparsegpt_prune_weight
    calls = {"n": 0}

    def second_fails(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("out of memory in block 1")
        return real(*args, **kwargs)

    monkeypatch.setattr(prune, "sparsegpt_prune_weight", second_fails)
    cfg = SparseGPTConfig(sparsity=0.5, calibration=[torch.randn(2, 24) for _ in range(2)],
                          blocks=[model[0], model[1]], progress=False)
    with pytest.raises(RuntimeError, match="block 1"):
        sparsecore.sparsify_(model, cfg)
    assert calls["n"] == 2
    assert_unchanged(model, snap)


def test_interrupt_while_timing_restores_the_model(monkeypatch):
    model = net()
    snap = snapshot(model)
    import sparsecore.kernel_choice as sp

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sp, "_call_ms", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sparsecore.sparsify_(model, MagnitudeConfig(sparsity=0.5))
    assert_unchanged(model, snap)


# ---------------------------------------------------------------- files and directories
class _Tok:
    def save_pretrained(self, d):
        with open(os.path.join(d, "tokenizer.json"), "w") as fh:
            fh.write("{}")


def _tiny_model():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=1)
    model = transformers.LlamaForCausalLM(config)
    sparsecore.sparsify_(model, MagnitudeConfig(sparsity=0.5, fallback_to_dense=False))
    return model


def test_overwrite_never_replaces_a_directory_sparsecore_did_not_write(tmp_path):
    model = _tiny_model()
    home = tmp_path / "models"
    home.mkdir()
    (home / "precious.bin").write_bytes(b"user data")
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="not a model directory written by sparsecore"):
            pruned_dir.save_pruned(model, _Tok(), str(home), {"method": "test"}, overwrite=overwrite)
    assert (home / "precious.bin").read_bytes() == b"user data"
    # A sparsecore directory with a file of the user's added is not ours any more either.
    out = tmp_path / "pruned"
    pruned_dir.save_pruned(model, _Tok(), str(out), {"method": "test"})
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a model directory written by sparsecore"):
        pruned_dir.save_pruned(model, _Tok(), str(out), {"method": "test"}, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models", "pruned"]  # no temporaries left


def test_own_directory_is_replaced_atomically_with_normal_permissions(tmp_path, monkeypatch):
    model = _tiny_model()
    out = tmp_path / "pruned"
    pruned_dir.save_pruned(model, _Tok(), str(out), {"method": "first"})
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~mask
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o666 & ~mask for p in out.iterdir())
    with pytest.raises(ValueError, match="--overwrite"):
        pruned_dir.save_pruned(model, _Tok(), str(out), {"method": "second"})
    # The final rename fails: the old directory must come back under its own name.
    real_replace = os.replace
    calls = {"n": 0}

    def failing_replace(src, dst):
        calls["n"] += 1
        if calls["n"] == 2:  # 1: old -> aside, 2: new -> target
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        pruned_dir.save_pruned(model, _Tok(), str(out), {"method": "second"}, overwrite=True)
    monkeypatch.setattr(os, "replace", real_replace)
    assert pruned_dir.read_recipe(str(out))["method"] == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pruned"]
    pruned_dir.save_pruned(model, _Tok(), str(out), {"method": "second"}, overwrite=True)
    assert pruned_dir.read_recipe(str(out))["method"] == "second"


def test_save_sparse_overwrites_only_its_own_files(tmp_path):
    model = net()
    sparsecore.sparsify_(model, MagnitudeConfig(sparsity=0.5, fallback_to_dense=False))
    theirs = tmp_path / "original.safetensors"
    theirs.write_bytes(b"someone's checkpoint")
    with pytest.raises(ValueError, match="not a sparsecore file"):
        sparsecore.save_sparse(model, str(theirs))
    assert theirs.read_bytes() == b"someone's checkpoint"
    ours = tmp_path / "m.safetensors"
    sparsecore.save_sparse(model, str(ours))
    sparsecore.save_sparse(model, str(ours))  # replacing our own file is fine
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(ours.stat().st_mode) == 0o666 & ~mask
    sparsecore.save_sparse(model, str(theirs), overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors", "original.safetensors"]

"""Property-based fuzzing of save_sparse / load_sparse files: truncations, bit flips and
byte edits anywhere (header, metadata, data), edited counts and shapes. Every case must
either raise ValueError naming the file, with the model left untouched, or load a model
whose outputs are exactly the original's; a corrupted file never loads with different
outputs. Outcome counts are printed at the end of the session."""

import json
import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from torch import nn

import sparsecore
from sparsecore import MagnitudeConfig, NMConfig, load_sparse, save_sparse
from conftest import OUTCOMES

EXAMPLES = int(os.environ.get("SPARSECORE_FUZZ_EXAMPLES", "300"))


def model_fn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(24, 32), nn.ReLU(), nn.Linear(32, 16), nn.LayerNorm(16))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzzfiles")
    files = {}
    for name, cfg in {"csr": MagnitudeConfig(sparsity=0.5, fallback_to_dense=False),
                      "csr-indices": MagnitudeConfig(sparsity=0.97, fallback_to_dense=False),
                      "nm": NMConfig(fallback_to_dense=False, format="nm")}.items():
        model = model_fn()
        sparsecore.sparsify_(model, cfg)
        path = str(d / f"{name}.safetensors")
        save_sparse(model, path)
        files[name] = (open(path, "rb").read(), model)
    return d, files


X = torch.randn(3, 24, generator=torch.Generator().manual_seed(1))


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _check(path, model):
    fresh = model_fn(seed=9)
    before = _state(fresh)
    try:
        load_sparse(fresh, path)
    except ValueError as exc:
        assert path in str(exc), f"error does not name the file: {exc}"
        assert all(torch.equal(before[k], v) for k, v in fresh.state_dict().items()), "model changed on error"
        assert all(isinstance(fresh[i], nn.Linear) for i in (0, 2))
        return "clean ValueError"
    with torch.no_grad():
        assert torch.equal(fresh(X), model(X)), "a corrupted file loaded with different outputs"
    return "loaded, outputs identical"


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(data=st.data())
def test_corrupted_files_never_load_differently(saved, data):
    d, files = saved
    name = data.draw(st.sampled_from(sorted(files)))
    raw, model = files[name]
    kind = data.draw(st.sampled_from(["truncate", "bitflip", "byte", "header-byte", "bitflips"]))
    buf = bytearray(raw)
    header_len = int.from_bytes(raw[:8], "little") + 8
    if kind == "truncate":
        buf = buf[: data.draw(st.integers(0, len(raw) - 1))]
    elif kind == "bitflip":
        i = data.draw(st.integers(0, len(raw) - 1))
        buf[i] ^= 1 << data.draw(st.integers(0, 7))
    elif kind == "bitflips":
        for _ in range(data.draw(st.integers(2, 8))):
            i = data.draw(st.integers(header_len, len(raw) - 1))
            buf[i] ^= 1 << data.draw(st.integers(0, 7))
    elif kind == "byte":
        buf[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    else:
        buf[data.draw(st.integers(0, header_len - 1))] = data.draw(st.sampled_from(list(b'0123456789",:{}[] x')))
    path = str(d / f"case-{name}.safetensors")
    with open(path, "wb") as fh:
        fh.write(bytes(buf))
    OUTCOMES[f"files: {_check(path, model)}"] += 1


@pytest.mark.parametrize("edit", ["shape", "count", "format", "n", "layers", "alias", "version"])
def test_edited_metadata_fields_raise(saved, tmp_path, edit):
    """Edits a user (or a tool) might make to the metadata, re-signed so that the checksum
    passes: the structural checks below it must still catch each one."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
    import zlib

    _, files = saved
    raw, _model = files["nm" if edit == "n" else "csr"]
    src = tmp_path / "src.safetensors"
    src.write_bytes(raw)
    tensors = load_file(str(src))
    with safe_open(str(src), framework="pt") as f:
        info = json.loads(f.metadata()["sparsecore"])
    layer = info["layers"]["0"]
    if edit == "shape":
        layer["shape"] = [32, 25]
    elif edit == "count":
        tensors["0.weight.values"] = tensors["0.weight.values"][:-1]
    elif edit == "format":
        layer["format"] = "coo"
    elif edit == "n":
        layer["n"] = 3
    elif edit == "layers":
        info["layers"] = ["0"]
    elif edit == "alias":
        info["aliases"] = {"9.weight": "nope"}
    else:
        info["version"] = "2"
    from sparsecore.serialization import tensor_checksum

    info["checksums"] = {k: tensor_checksum(k, v) for k, v in tensors.items()}
    meta = json.dumps(info)
    path = str(tmp_path / "edited.safetensors")
    save_file(tensors, path, metadata={"sparsecore": meta, "sparsecore_crc32": f"{zlib.crc32(meta.encode()):08x}"})
    assert _check(path, None) == "clean ValueError"


@pytest.mark.fuzz_long
@settings(max_examples=20 * EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_corrupted_files_long(saved, data):
    test_corrupted_files_never_load_differently.hypothesis.inner_test(saved, data)

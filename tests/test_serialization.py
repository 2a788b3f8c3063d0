"""Compressed save / load: smaller than dense, identical outputs, validated on load, no partial files."""

import json
import zlib
import os

import pytest
import torch
from torch import nn

from sparsecore import BlockConfig, MagnitudeConfig, load_sparse, save_sparse, sparsify_
from sparsecore.nn import SparseLinear


def model_fn(dtype=torch.float32):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(96, 128), nn.ReLU(), nn.Linear(128, 40), nn.LayerNorm(40)).to(dtype)


def dense_size(model, tmp_path):
    from safetensors.torch import save_file

    p = tmp_path / "dense.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(p))
    return p.stat().st_size


@pytest.mark.parametrize("dtype,sparsity", [(torch.float32, 0.5), (torch.bfloat16, 0.5), (torch.float32, 0.95)])
def test_round_trip_identical_and_smaller(dtype, sparsity, tmp_path, gen):
    model = model_fn(dtype)
    size_dense = dense_size(model, tmp_path)
    sparsify_(model, MagnitudeConfig(sparsity=sparsity, fallback_to_dense=False))
    path = str(tmp_path / "m.safetensors")
    save_sparse(model, path)
    fresh = model_fn(dtype)
    load_sparse(fresh, path)
    assert isinstance(fresh[0], SparseLinear) and isinstance(fresh[2], SparseLinear)
    x = torch.randn(7, 96, generator=gen).to(dtype)
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))
    size_sparse = os.path.getsize(path)
    # 50% bf16: values + 1 bit per weight ~ 0.56 of dense; fp32 at 50% ~ 0.53; 95%: indices
    assert size_sparse < 0.62 * size_dense, (size_sparse, size_dense)
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".sparsecore-")]


def test_bsr_round_trip(tmp_path, gen):
    model = model_fn()
    sparsify_(model, BlockConfig(sparsity=0.5, blocksize=(8, 8), fallback_to_dense=False, format="bsr"))
    path = str(tmp_path / "b.safetensors")
    save_sparse(model, path)
    fresh = load_sparse(model_fn(), path)
    x = torch.randn(3, 96, generator=gen)
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))


def saved(tmp_path):
    model = model_fn()
    sparsify_(model, MagnitudeConfig(sparsity=0.5, fallback_to_dense=False))
    path = str(tmp_path / "m.safetensors")
    save_sparse(model, path)
    return path


def test_truncated_and_corrupted_files_raise(tmp_path):
    path = saved(tmp_path)
    data = open(path, "rb").read()
    trunc = tmp_path / "trunc.safetensors"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupted or truncated"):
        load_sparse(model_fn(), str(trunc))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="corrupted or truncated"):
        load_sparse(model_fn(), str(junk))


def resigned(tensors: dict, meta: dict) -> dict:
    """The metadata with checksums recomputed for edited tensors: what a deliberate edit
    (not a corruption) looks like, so the checks below the checksums are tested too."""
    from sparsecore.serialization import tensor_checksum

    info = json.loads(meta["sparsecore"])
    info["checksums"] = {k: tensor_checksum(k, v) for k, v in tensors.items()}
    raw = json.dumps(info)
    return {"sparsecore": raw, "sparsecore_crc32": f"{zlib.crc32(raw.encode()) & 0xFFFFFFFF:08x}"}


def test_tampered_parts_raise_and_leave_model_untouched(tmp_path):
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    path = saved(tmp_path)
    tensors = load_file(path)
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
    tensors["0.weight.values"] = tensors["0.weight.values"][:-1]  # one value short of the bitmap
    bad = str(tmp_path / "bad.safetensors")
    save_file(tensors, bad, metadata=meta)
    with pytest.raises(ValueError, match="does not match its checksum"):
        load_sparse(model_fn(), bad)
    save_file(tensors, bad, metadata=resigned(tensors, meta))
    fresh = model_fn()
    before = fresh[0].weight.clone()
    with pytest.raises(ValueError, match="bitmap marks"):
        load_sparse(fresh, bad)
    assert isinstance(fresh[0], nn.Linear) and torch.equal(fresh[0].weight, before)
    # wrong architecture
    with pytest.raises(ValueError, match="in the file but"):
        load_sparse(nn.Sequential(nn.Linear(96, 64), nn.ReLU(), nn.Linear(64, 40), nn.LayerNorm(40)), path)
    # bad metadata
    save_file(load_file(path), bad, metadata=resigned(load_file(path), {"sparsecore": json.dumps({"version": 99, "layers": {}})}))
    with pytest.raises(ValueError, match="version 99"):
        load_sparse(model_fn(), bad)
    save_file(load_file(path), bad)
    with pytest.raises(ValueError, match="no sparsecore metadata"):
        load_sparse(model_fn(), bad)


def test_indices_out_of_range_are_caught(tmp_path):
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    model = model_fn()
    sparsify_(model, MagnitudeConfig(sparsity=0.97, fallback_to_dense=False))  # indices encoding
    path = str(tmp_path / "s.safetensors")
    save_sparse(model, path)
    tensors = load_file(path)
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
    assert "0.weight.col_idx" in tensors
    tensors["0.weight.col_idx"][0] = 500
    bad = str(tmp_path / "bad.safetensors")
    save_file(tensors, bad, metadata=resigned(tensors, meta))
    with pytest.raises(ValueError, match="out of range"):
        load_sparse(model_fn(), bad)


def test_failed_save_leaves_nothing(tmp_path):
    model = model_fn()
    sparsify_(model, MagnitudeConfig(sparsity=0.5, fallback_to_dense=False))
    with pytest.raises(FileNotFoundError):
        save_sparse(model, str(tmp_path / "missing-dir" / "m.safetensors"))
    assert os.listdir(tmp_path) == []

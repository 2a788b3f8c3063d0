"""The README's promises about bad input, checked one by one.

The README's "Bad input" section lists what every public entry point does with bad
input; each bullet there names a category that this test exercises. If the README
changes, this test must change with it (it reads the section and fails on a bullet it
does not know)."""

import os
import re

import pytest
import torch

import sparsecore
from sparsecore import BSR, CSR, NM

README = os.path.join(os.path.dirname(__file__), os.pardir, "README.md")


def claims() -> list[str]:
    text = open(README, encoding="utf-8").read()
    m = re.search(r"<!-- bad-input-claims -->(.*?)<!-- /bad-input-claims -->", text, re.S)
    assert m, "README has no bad-input claims section"
    return [line[2:].strip() for line in m.group(1).splitlines() if line.startswith("- ")]


def raises_naming(exc, pattern, fn):
    with pytest.raises(exc, match=pattern):
        fn()


def check_shapes():
    a = CSR.from_dense(torch.eye(4))
    raises_naming(ValueError, "in_features 4", lambda: sparsecore.sparse_linear(torch.ones(2, 3), a))
    raises_naming(ValueError, "bias must hold 4", lambda: sparsecore.sparse_linear(torch.ones(2, 4), a, torch.ones(3)))
    raises_naming(ValueError, "multiple of the block", lambda: BSR.from_dense(torch.ones(6, 6), (4, 4)))


def check_dtypes():
    a = CSR.from_dense(torch.eye(4))
    raises_naming(TypeError, "dtype torch.float64", lambda: sparsecore.sparse_linear(torch.ones(2, 4).double(), a))
    raises_naming(TypeError, "not supported", lambda: CSR.from_dense(torch.eye(4, dtype=torch.int32)))


def check_devices():
    a = CSR.from_dense(torch.eye(4))
    raises_naming(ValueError, "meta", lambda: sparsecore.sparse_linear(torch.ones(2, 4, device="meta"), a))


def check_indices():
    raises_naming(ValueError, "not sorted", lambda: CSR(torch.tensor([0, 2]), torch.tensor([3, 1], dtype=torch.int32),
                                                       torch.ones(2), (1, 4)))
    raises_naming(ValueError, "out of range", lambda: CSR(torch.tensor([0, 1]), torch.tensor([4], dtype=torch.int32),
                                                         torch.ones(1), (1, 4)))
    a = CSR.from_dense(torch.eye(4))
    col = a.col_idx.clone()
    col[0] = 99
    raises_naming(ValueError, "outside the matrix", lambda: torch.ops.sparsecore.csr_mm(
        a.row_ptr, col, a.values, a.row_chunks, a.bitmap, 4, torch.ones(1, 4), None, True))


def check_values():
    raises_naming(ValueError, "NaN or Inf", lambda: CSR.from_dense(torch.tensor([[1.0, float("nan")]])))
    raises_naming(ValueError, "NaN or Inf", lambda: NM.from_dense(torch.tensor([[float("inf"), 0.0, 0.0, 1.0]])))


def check_nan_rule():
    a = CSR.from_dense(torch.eye(4))
    x = torch.ones(3, 4)
    x[1, 2] = float("inf")
    y = sparsecore.sparse_linear(x, a)
    assert torch.isnan(y[1]).all() and torch.isfinite(y[[0, 2]]).all()


def check_files(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(8, 8))
    sparsecore.sparsify_(model, sparsecore.MagnitudeConfig(sparsity=0.5, fallback_to_dense=False))
    path = tmp_path / "m.safetensors"
    sparsecore.save_sparse(model, str(path))
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x10
    path.write_bytes(bytes(data))
    fresh = torch.nn.Sequential(torch.nn.Linear(8, 8))
    raises_naming(ValueError, re.escape(str(path)), lambda: sparsecore.load_sparse(fresh, str(path)))
    assert isinstance(fresh[0], torch.nn.Linear)


def check_models():
    model = torch.nn.Sequential(torch.nn.Linear(8, 6))
    before = model[0].weight.clone()
    raises_naming(ValueError, "format 'nm'", lambda: sparsecore.sparsify_(model, sparsecore.MagnitudeConfig(format="nm")))
    assert isinstance(model[0], torch.nn.Linear) and torch.equal(model[0].weight, before)


def check_directories(tmp_path):
    from sparsecore.cli import main

    (tmp_path / "mine.txt").write_text("keep")
    assert main(["prune", "--output", str(tmp_path), "--overwrite"]) == 2
    assert (tmp_path / "mine.txt").read_text() == "keep"


def check_cli(capsys):
    from sparsecore.cli import main

    assert main(["eval", "--eval-tokens", "0"]) == 2
    assert "error: --eval-tokens must be >= 1" in capsys.readouterr().err


def check_attention():
    from sparsecore.attention import BlockMask, flash_attention

    q, k, v = torch.rand(1, 4, 8, 16), torch.rand(1, 2, 8, 16), torch.rand(1, 2, 8, 16)
    raises_naming(ValueError, "not a multiple of 3 KV heads",
                  lambda: flash_attention(q, torch.rand(1, 3, 8, 16), torch.rand(1, 3, 8, 16)))
    raises_naming(ValueError, "more queries", lambda: flash_attention(torch.rand(1, 4, 9, 16), k, v))
    raises_naming(ValueError, "window", lambda: flash_attention(q, k, v, window=-1))
    raises_naming(ValueError, "KV range", lambda: flash_attention(q, k, v, kv_start=[2], kv_end=[9]))
    raises_naming(ValueError, "block_mask is for", lambda: flash_attention(q, k, v, block_mask=BlockMask.causal(16, 16)))
    raises_naming(TypeError, "dtype", lambda: flash_attention(q.double(), k, v))
    m = BlockMask.causal(8, 8, block_q=16, block_k=16)
    raises_naming(ValueError, "outside", lambda: torch.ops.sparsecore.flash_attention(
        q, k, v, m.row_ptr, torch.tensor([3], dtype=torch.int32), 16, 16, 1, 1, None, None, True, 0, 0, 0.25, 0.0,
        float("-inf")))
    q2 = q.clone()
    q2[0, 0, 3, 0] = float("nan")
    out, lse = flash_attention(q2, k, v, return_lse=True)
    assert torch.isnan(out[0, 0, 3]).all() and torch.isnan(lse[0, 0, 3]) and torch.isfinite(out[0, 1]).all()
    out, lse = flash_attention(q, k, v, kv_start=[7], kv_end=[8], return_lse=True)
    assert out[0, :, :7].abs().sum() == 0 and torch.isneginf(lse[0, :, :7]).all()


CHECKS = {
    "attention": check_attention,
    "shapes": check_shapes, "dtypes": check_dtypes, "devices": check_devices, "indices": check_indices,
    "values": check_values, "nan rule": check_nan_rule, "files": check_files, "models": check_models,
    "directories": check_directories, "cli": check_cli,
}


def test_every_claim_holds(tmp_path, capsys):
    listed = claims()
    assert listed, "no claims listed"
    for claim in listed:
        key = claim.split(":")[0].strip("*` ").lower()
        assert key in CHECKS, f"README claim {claim!r} has no check here"
        fn = CHECKS[key]
        args = {"tmp_path": tmp_path / key.replace(" ", "_"), "capsys": capsys}
        if "tmp_path" in fn.__code__.co_varnames:
            args["tmp_path"].mkdir()
        fn(**{k: v for k, v in args.items() if k in fn.__code__.co_varnames[:fn.__code__.co_argcount]})
    assert set(CHECKS) == {c.split(":")[0].strip("*` ").lower() for c in listed}, "a check has no README claim"

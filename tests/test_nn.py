"""SparseLinear against the fake-sparse dense model (masked nn.Linear), as torchao tests it."""

import pytest
import torch
from torch import nn

import sparsecore
from sparsecore.nn import SparseLinear
from sparsecore.pruning import block_mask, magnitude_mask


def integer_linear(i, o, gen):
    lin = nn.Linear(i, o)
    with torch.no_grad():
        lin.weight.copy_(torch.randint(-8, 9, (o, i), generator=gen).float() / 8)
        lin.bias.copy_(torch.randint(-4, 5, (o,), generator=gen).float())
    return lin


def test_mlp_matches_fake_sparse_dense_exactly(gen):
    l1, l2 = integer_linear(40, 64, gen), integer_linear(64, 24, gen)
    m1, m2 = magnitude_mask(l1.weight, 0.5), magnitude_mask(l2.weight, 0.7)
    dense = nn.Sequential(l1, nn.ReLU(), l2)
    with torch.no_grad():
        l1.weight.mul_(m1)
        l2.weight.mul_(m2)
    sparse = nn.Sequential(SparseLinear.from_linear(l1, m1), nn.ReLU(), SparseLinear.from_linear(l2, m2))
    x = torch.randint(-8, 9, (5, 3, 40), generator=gen).float() / 4
    with torch.no_grad():
        assert torch.equal(sparse(x), dense(x))
    assert sparse[0].density == pytest.approx(0.5, abs=0.02)
    assert "format=CSR" in repr(sparse[0])


def test_bsr_from_linear_and_block_check(gen):
    lin = integer_linear(32, 16, gen)
    mask = block_mask(lin.weight.abs(), (4, 8), 0.5)
    sl = SparseLinear.from_linear(lin, mask, format="bsr", blocksize=(4, 8))
    x = torch.randint(-8, 9, (3, 32), generator=gen).float() / 4
    with torch.no_grad():
        want = nn.functional.linear(x, lin.weight * mask, lin.bias)
        assert torch.equal(sl(x), want)
    bad = mask.clone()
    bad[0, 0] = ~bad[0, 0]
    with pytest.raises(ValueError, match="not constant"):
        SparseLinear.from_linear(lin, bad, format="bsr", blocksize=(4, 8))
    with pytest.raises(ValueError, match="format must be"):
        SparseLinear.from_linear(lin, mask, format="coo")
    with pytest.raises(ValueError, match="mask shape"):
        SparseLinear.from_linear(lin, mask[:, :4])
    with pytest.raises(TypeError, match="nn.Linear"):
        SparseLinear.from_linear(nn.ReLU())


def test_module_to_dtype_converts_weight(gen):
    lin = integer_linear(48, 20, gen)
    mask = magnitude_mask(lin.weight, 0.5)
    sl = SparseLinear.from_linear(lin, mask).to(torch.bfloat16)
    assert sl.weight.dtype == torch.bfloat16 and sl.bias.dtype == torch.bfloat16
    assert sl.weight.col_idx.dtype == torch.int16  # indices keep their type
    x = torch.randint(-8, 9, (4, 48), generator=gen).float() / 4
    with torch.no_grad():
        want = nn.functional.linear(x.double(), (lin.weight * mask).double(), lin.bias.double())
        got = sl(x.bfloat16())
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, want.to(torch.bfloat16))


def test_compiled_module(gen):
    lin = integer_linear(24, 16, gen)
    sl = SparseLinear.from_linear(lin, magnitude_mask(lin.weight, 0.5))
    compiled = torch.compile(sl, fullgraph=True)
    x = torch.randn(3, 24, generator=gen)
    with torch.no_grad():
        assert torch.equal(compiled(x), sl(x))


def test_top_level_namespaces():
    assert sparsecore.nn.SparseLinear is SparseLinear
    assert callable(sparsecore.pruning.nm_mask)

"""Pruning masks: exact counts, structure, deterministic ties, against a brute-force reference."""

import pytest
import torch

from sparsecore.pruning import block_mask, magnitude_mask, nm_mask, sparsity_of, topk_mask, unstructured_mask


def reference_keep(scores_row, prune):
    """Brute force: prune the `prune` lowest (score, index) pairs."""
    order = sorted(range(len(scores_row)), key=lambda i: (scores_row[i], i))
    pruned = set(order[:prune])
    return [i not in pruned for i in range(len(scores_row))]


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.7, 1.0])
def test_unstructured_per_row_matches_reference(sparsity, gen):
    # Coarse integer scores: many ties, which must be broken by index.
    scores = torch.randint(0, 4, (9, 37), generator=gen).float()
    mask = unstructured_mask(scores, sparsity)
    prune = int(sparsity * 37 + 0.5)
    for r in range(9):
        assert mask[r].tolist() == reference_keep(scores[r].tolist(), prune)
    assert torch.equal(mask, unstructured_mask(scores.clone(), sparsity))  # deterministic


def test_unstructured_per_tensor_and_magnitude(gen):
    w = torch.randn(16, 24, generator=gen)
    mask = unstructured_mask(w.abs(), 0.75, per_row=False)
    assert int((~mask).sum()) == int(0.75 * 16 * 24 + 0.5)
    kept_min = w.abs()[mask].min()
    pruned_max = w.abs()[~mask].max()
    assert kept_min >= pruned_max
    assert torch.equal(magnitude_mask(w, 0.5), unstructured_mask(w.abs(), 0.5))
    assert sparsity_of(magnitude_mask(w, 0.5)) == pytest.approx(0.5)


def test_topk(gen):
    s = torch.randn(5, 11, generator=gen)
    mask = topk_mask(s, 3)
    assert (mask.sum(dim=1) == 3).all()
    assert torch.equal(mask, unstructured_mask(s, 8 / 11))
    assert int(topk_mask(s, 7, per_row=False).sum()) == 7
    with pytest.raises(ValueError, match="k must be"):
        topk_mask(s, 12)


@pytest.mark.parametrize("n,m", [(2, 4), (4, 8), (1, 4), (3, 3)])
def test_nm_structure(n, m, gen):
    s = torch.randn(6, 8 * m, generator=gen)
    mask = nm_mask(s, n, m)
    groups = mask.reshape(6, -1, m)
    assert (groups.sum(dim=-1) == n).all()
    # kept entries are the largest of their group
    sg = s.reshape(6, -1, m)
    kept_min = torch.where(groups, sg, torch.full_like(sg, float("inf"))).amin(-1)
    pruned_max = torch.where(groups, torch.full_like(sg, -float("inf")), sg).amax(-1)
    assert (kept_min >= pruned_max).all()


def test_nm_ties_are_deterministic():
    mask = nm_mask(torch.ones(1, 8), 2, 4)
    assert mask.tolist() == [[False, False, True, True, False, False, True, True]]


def test_block_mask(gen):
    s = torch.rand(16, 32, generator=gen)
    mask = block_mask(s, (4, 8), 0.5)
    blocks = mask.reshape(4, 4, 4, 8).permute(0, 2, 1, 3).reshape(4, 4, 32)
    assert ((blocks.all(-1)) | (~blocks.any(-1))).all()  # whole blocks only
    assert sparsity_of(mask) == pytest.approx(0.5)
    per_row = block_mask(s, (4, 8), 0.5, per_block_row=True)
    assert (per_row.reshape(4, 4, 32)[:, 0, :].reshape(4, 4, 8)[:, :, 0].sum(-1) == 2).all()


def test_bad_input():
    s = torch.rand(4, 8)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="sparsity"):
            unstructured_mask(s, bad)
    with pytest.raises(ValueError, match="multiple of 3"):
        nm_mask(s, 2, 3)
    with pytest.raises(ValueError, match="0 < N <= M"):
        nm_mask(s, 5, 4)
    with pytest.raises(ValueError, match="block shape"):
        block_mask(s, (3, 3), 0.5)
    with pytest.raises(ValueError, match="NaN or Inf"):
        unstructured_mask(torch.tensor([[1.0, float("nan")]]), 0.5)
    with pytest.raises(TypeError, match="floating point"):
        unstructured_mask(torch.ones(2, 2, dtype=torch.int64), 0.5)
    with pytest.raises(ValueError, match="2-D"):
        unstructured_mask(torch.ones(4), 0.5)

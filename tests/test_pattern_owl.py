"""Pattern parsing/checks and OWL's per-layer allocation."""

import pytest
import torch

from sparsecore.pruning import Pattern, outlier_ratio, owl_sparsities


@pytest.mark.parametrize("text,expected", [
    ("2:4", Pattern(nm=(2, 4))), ("4:8", Pattern(nm=(4, 8))), ("50%", Pattern(0.5)), ("0.7", Pattern(0.7)),
    ("unstructured", Pattern(0.5)), ("block16", Pattern(0.5, block=(16, 16))), ("block8x32", Pattern(0.5, block=(8, 32))),
])
def test_parse(text, expected):
    assert Pattern.parse(text) == expected


@pytest.mark.parametrize("bad", ["3:2", "0:4", "150%", "1.0", "-0.1", "nan", "blockx", "2-4"])
def test_parse_rejects(bad):
    with pytest.raises(ValueError):
        Pattern.parse(bad)


def test_check_and_mask():
    with pytest.raises(ValueError, match="multiple of 8"):
        Pattern(nm=(4, 8)).check("layer", (4, 12))
    with pytest.raises(ValueError, match="16x16 block"):
        Pattern(0.5, block=(16, 16)).check("layer", (32, 40))
    scores = torch.arange(32.0).reshape(4, 8)
    assert Pattern(nm=(2, 4)).mask(scores).sum() == 16
    assert Pattern(nm=(2, 4)).with_sparsity(0.9) == Pattern(nm=(2, 4))
    assert Pattern(0.25).mask(scores).sum() == 24
    assert Pattern(0.5, block=(2, 4)).mask(scores).tolist() == [[False] * 8] * 2 + [[True] * 8] * 2


def test_outlier_ratio():
    s = torch.ones(100)
    s[:3] = 100.0
    # mean = (97 + 300) / 100 = 3.97; entries above 5 x 3.97 are the three outliers
    assert outlier_ratio([s[:50], s[50:]], m=5) == pytest.approx(0.03)
    assert outlier_ratio([torch.ones(10)], m=5) == 0.0


def test_owl_sparsities():
    out = owl_sparsities([0.01, 0.03, 0.02, 0.01], 0.5, lam=0.08)
    assert sum(out) / 4 == pytest.approx(0.5)
    assert max(out) - min(out) == pytest.approx(0.16)
    assert out[1] == min(out)  # most outliers, least pruning
    assert owl_sparsities([0.02] * 3, 0.6) == [0.6] * 3
    with pytest.raises(ValueError, match="out of"):
        owl_sparsities([0.0, 1.0], 0.05, lam=0.1)

"""Wanda, layer by layer, against a hand-written reference on a toy two-block model."""

import pytest
import torch
from torch import nn

from sparsecore.pruning import InputStats, capture_block_inputs, nm_mask, unstructured_mask, wanda_prune_, wanda_scores


class Block(nn.Module):
    """Linear -> ReLU -> Linear with a residual; takes a keyword argument like HF decoder layers."""

    def __init__(self, d, h):
        super().__init__()
        self.up = nn.Linear(d, h)
        self.down = nn.Linear(h, d)

    def forward(self, x, scale=1.0):
        return (x + self.down(torch.relu(self.up(x))) * scale,)


class Toy(nn.Module):
    def __init__(self, d=24, h=40, n=2):
        super().__init__()
        self.embed = nn.Linear(8, d)
        self.blocks = nn.ModuleList(Block(d, h) for _ in range(n))
        self.head = nn.Linear(d, 5)

    def forward(self, x):
        x = self.embed(x)
        for blk in self.blocks:
            x = blk(x, scale=0.5)[0]
        return self.head(x)


def reference_wanda(model, batches, sparsity=None, nm=None):
    """Independent re-implementation: explicit activations, no hooks."""
    model = model
    xs = [model.embed(b) for b in batches]
    masks = {}
    with torch.no_grad():
        for i, blk in enumerate(model.blocks):
            x_all = torch.cat([x.reshape(-1, x.shape[-1]) for x in xs]).double()
            h_all = torch.relu(blk.up(x_all.float())).double()
            for name, lin, inp in (("up", blk.up, x_all), ("down", blk.down, h_all)):
                scores = lin.weight.abs().double() * inp.pow(2).sum(0).sqrt()
                mask = nm_mask(scores, *nm) if nm else unstructured_mask(scores, sparsity)
                masks[f"{i}.{name}"] = mask
            blk.up.weight.mul_(masks[f"{i}.up"])
            blk.down.weight.mul_(masks[f"{i}.down"])
            xs = [blk(x, scale=0.5)[0] for x in xs]
    return masks


@pytest.mark.parametrize("kw", [{"sparsity": 0.5}, {"sparsity": 0.7}, {"nm": (2, 4)}])
def test_wanda_matches_reference(kw, gen):
    torch.manual_seed(0)
    model = Toy()
    ref_model = Toy()
    ref_model.load_state_dict(model.state_dict())
    batches = [torch.randn(3, 7, 8, generator=gen) for _ in range(2)]
    report = wanda_prune_(model, list(model.blocks), batches, progress=False, **kw)
    ref = reference_wanda(ref_model, batches, kw.get("sparsity"), kw.get("nm"))
    for i, blk in enumerate(model.blocks):
        assert torch.equal(blk.up.weight != 0, ref[f"{i}.up"])
        assert torch.equal(blk.down.weight != 0, ref[f"{i}.down"])
        assert torch.equal(blk.up.weight, ref_model.blocks[i].up.weight)
        assert torch.equal(blk.down.weight, ref_model.blocks[i].down.weight)
    expected = 0.5 if "nm" in kw else kw["sparsity"]
    assert all(abs(v - expected) < 0.02 for v in report.values())
    # layers outside the blocks are untouched
    assert float((model.head.weight == 0).float().mean()) == 0.0


def test_capture_passes_kwargs_and_filter(gen):
    model = Toy()
    inputs = capture_block_inputs(model, model.blocks[0], [torch.randn(2, 4, 8, generator=gen)])
    assert len(inputs) == 1 and inputs[0][1] == {"scale": 0.5}
    report = wanda_prune_(model, list(model.blocks), [torch.randn(2, 4, 8, generator=gen)], sparsity=0.5,
                          filter_fn=lambda name, lin: name != "down", progress=False)
    assert "block.0/down" not in report and report["block.0/up"] == pytest.approx(0.5)
    assert float((model.blocks[0].down.weight == 0).float().mean()) == 0.0


def test_bad_input(gen):
    model = Toy()
    with pytest.raises(ValueError, match="no calibration batch"):
        wanda_prune_(model, list(model.blocks), [], sparsity=0.5, progress=False)
    with pytest.raises(ValueError, match="input_norms"):
        wanda_scores(torch.ones(3, 4), torch.ones(5))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="multiple of 3"):
        wanda_prune_(model, list(model.blocks), [torch.randn(2, 8, generator=gen)], nm=(2, 3), progress=False)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # untouched
    stats = InputStats(4)
    stats.update(torch.ones(2, 3, 4))
    assert stats.tokens == 6 and torch.allclose(stats.norms, torch.full((4,), 6.0).sqrt().double())

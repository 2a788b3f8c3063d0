"""sparsify_: masks applied, layers converted (or kept dense when slower), outputs unchanged vs fake-sparse."""

import pytest
import torch
from torch import nn

from sparsecore import BlockConfig, MagnitudeConfig, NMConfig, sparsify_
from sparsecore.nn import SparseLinear


def small_model(gen):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 16))


@pytest.mark.parametrize("config,expected,fmt", [
    (MagnitudeConfig(sparsity=0.7, fallback_to_dense=False), 0.7, "csr"),
    (NMConfig(n=2, m=4, fallback_to_dense=False, format="nm"), 0.5, "nm"),
    (NMConfig(n=2, m=4, fallback_to_dense=False), 0.5, ("nm", "csr")),  # auto: the faster, measured
    (NMConfig(n=2, m=4, fallback_to_dense=False, format="csr"), 0.5, "csr"),
    (BlockConfig(sparsity=0.5, blocksize=(16, 16), fallback_to_dense=False, format="bsr"), 0.5, "bsr"),
    (BlockConfig(sparsity=0.5, blocksize=(16, 16), fallback_to_dense=False), 0.5, ("bsr", "csr")),
])
def test_sparsify_converts_and_matches_fake_sparse(config, expected, fmt, gen):
    model = small_model(gen)
    x = torch.randn(5, 64, generator=gen)
    report = sparsify_(model, config)
    # After sparsify_ the dense twins hold the pruned weights; compare with them.
    assert len(report.layers) == 3
    for layer in report.layers:
        assert layer.sparsity == pytest.approx(expected, abs=0.02)
        assert layer.format in (fmt if isinstance(fmt, tuple) else (fmt,))
        assert type(model[int(layer.name)].weight).__name__.lower() == layer.format
    assert all(isinstance(model[i], SparseLinear) for i in (0, 2, 4))
    fake = small_model(gen)
    with torch.no_grad():
        for i in (0, 2, 4):
            fake[i].weight.copy_(model[i].weight.to_dense())
            fake[i].bias.copy_(model[i].bias)
        torch.testing.assert_close(model(x), fake(x), rtol=1e-5, atol=1e-5)
    assert "format" in str(report)


def test_filter_fn_and_fallback(gen):
    model = small_model(gen)
    report = sparsify_(model, MagnitudeConfig(sparsity=0.5), filter_fn=lambda m, name: name != "4")
    assert [r.name for r in report.layers] == ["0", "2"]
    assert isinstance(model[4], nn.Linear)
    for r in report.layers:
        converted = isinstance(model[int(r.name)], SparseLinear)
        assert converted == (r.format != "dense (fallback)")
        assert (r.sparse_ms <= r.dense_ms) == converted or not converted
        # pruned weights are in place either way
        w = model[int(r.name)].weight
        w = w.to_dense() if converted else w
        assert float((w == 0).float().mean()) >= 0.5


@pytest.mark.parametrize("fastest", ["NM", "CSR", "dense"])
def test_auto_format_keeps_the_measured_fastest(fastest, gen, monkeypatch):
    """format="auto" times N:M weights in the N:M kernel and as CSR (same entries) and keeps
    what the clock says; an explicit format or reformat=False is never changed."""
    import sparsecore.kernel_choice as sp

    def fake_ms(m, x):
        kind = type(m.weight).__name__ if isinstance(m, SparseLinear) else "dense"
        return 0.5 if kind == fastest else 1.0

    monkeypatch.setattr(sp, "_call_ms", fake_ms)
    model = small_model(gen)
    x = torch.randn(3, 64, generator=gen)
    report = sparsify_(model, NMConfig(n=2, m=4))
    expected = {"NM": "nm", "CSR": "csr", "dense": "dense (fallback)"}[fastest]
    assert [r.format for r in report.layers] == [expected] * 3
    fake = small_model(gen)
    with torch.no_grad():
        for i in (0, 2, 4):
            w = model[i].weight
            fake[i].weight.copy_(w.to_dense() if isinstance(model[i], SparseLinear) else w)
            if fastest != "dense":
                assert type(w).__name__ == fastest
                assert (w.to_dense().reshape(-1, 4) != 0).sum(-1).max() <= 2
        torch.testing.assert_close(model(x), fake(x), rtol=1e-5, atol=1e-5)
    kept = small_model(gen)
    sparsify_(kept, NMConfig(n=2, m=4, format="nm", fallback_to_dense=False))
    if fastest == "CSR":
        assert all(type(kept[i].weight).__name__ == "NM" for i in (0, 2, 4))
        sp.select_kernels_(kept, reformat=False)
        assert all(type(kept[i].weight).__name__ == "NM" for i in (0, 2, 4))
        sp.select_kernels_(kept)
        assert all(type(kept[i].weight).__name__ == "CSR" for i in (0, 2, 4))


def test_bad_configs(gen):
    model = small_model(gen)
    with pytest.raises(TypeError, match="unsupported config"):
        sparsify_(model, object())
    with pytest.raises(ValueError, match="sparsity"):
        sparsify_(model, MagnitudeConfig(sparsity=1.5))
    with pytest.raises(ValueError, match="multiple of 3"):
        sparsify_(small_model(gen), NMConfig(n=2, m=3))
    with pytest.raises(ValueError, match="format must be"):
        sparsify_(small_model(gen), MagnitudeConfig(format="coo"))
    with pytest.raises(ValueError, match="tune_tokens"):
        sparsify_(small_model(gen), MagnitudeConfig(tune_tokens=0))


def test_failure_leaves_model_untouched(gen):
    model = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 30), nn.Linear(30, 8))  # 30 is not a multiple of 4
    before = [m.weight.clone() for m in model]
    with pytest.raises(ValueError, match="multiple of 4"):
        sparsify_(model, NMConfig(n=2, m=4))
    assert all(isinstance(m, nn.Linear) for m in model)
    assert all(torch.equal(m.weight, w) for m, w in zip(model, before))


@pytest.mark.parametrize("densified_wins_from", [None, 16, 64])
def test_prefill_threshold_follows_the_measurement(densified_wins_from, gen, monkeypatch):
    """Layers kept sparse for decode run prefill through the dense GEMM from the smallest
    measured prompt length at which that is faster (and at every longer one)."""
    import sparsecore.kernel_choice as sp

    def fake_ms(m, x):
        if isinstance(m, nn.Linear):
            return 2.0                     # dense twin: slower than sparse at decode
        if isinstance(m, SparseLinear):
            return 1.0
        wins = densified_wins_from is not None and x.shape[0] >= densified_wins_from  # densify + GEMM
        return 0.5 if wins else 1.5

    monkeypatch.setattr(sp, "_call_ms", fake_ms)
    model = small_model(gen)
    report = sparsify_(model, MagnitudeConfig(sparsity=0.5, prefill_tokens=128))
    assert [r.dense_from_tokens for r in report.layers] == [densified_wins_from] * 3
    assert all(model[i].dense_from_tokens == densified_wins_from for i in (0, 2, 4))
    assert "prefill GEMM from" in str(report)
    monkeypatch.undo()
    # The dense-GEMM path gives the sparse kernel's numbers (fp32 rounding apart).
    fake = small_model(gen)
    with torch.no_grad():
        for i in (0, 2, 4):
            fake[i].weight.copy_(model[i].weight.to_dense())
            fake[i].bias.copy_(model[i].bias)
        for tokens in (1, 15, 16, 64, 100):
            x = torch.randn(tokens, 64, generator=gen)
            torch.testing.assert_close(model(x), fake(x), rtol=1e-5, atol=1e-5)


def test_prefill_tuning_off(gen, monkeypatch):
    import sparsecore.kernel_choice as sp

    monkeypatch.setattr(sp, "_call_ms", lambda m, x: 0.1 if not isinstance(m, nn.Module) else 1.0)
    for config in (MagnitudeConfig(sparsity=0.5, prefill_tokens=None, fallback_to_dense=False),
                   MagnitudeConfig(sparsity=0.5, fallback_to_dense=False),       # all-sparse means no GEMM either
                   MagnitudeConfig(sparsity=0.5, prefill_tokens=1)):
        model = small_model(gen)
        sparsify_(model, config)
        assert all(getattr(model[i], "dense_from_tokens", None) is None for i in (0, 2, 4))
    for bad in (0, -3, 2.5, True, "128"):
        with pytest.raises(ValueError, match="prefill_tokens"):
            sparsify_(small_model(gen), MagnitudeConfig(sparsity=0.5, prefill_tokens=bad))
    with pytest.raises(ValueError, match="prefill_tokens"):
        sp.select_kernels_(small_model(gen), prefill_tokens=0)


def test_timing_variants_take_turns_so_a_slow_spell_hits_all(monkeypatch):
    """Dense and sparse are timed round by round, not one after the other: with a machine
    that runs 3x slower for the first half of the measurement, timing dense first and sparse
    second would call the slower sparse kernel faster."""
    import sparsecore.kernel_choice as sp

    calls = []
    base = {"dense0": 1.0, "dense1": 1.0, "sparse0": 1.2}

    def drifting_ms(layer, x):
        calls.append(layer)
        total = 3 * 6  # 3 calls a round, reps=5 plus one warm-up round
        return base[layer] * (3.0 if len(calls) <= total // 2 else 1.0)

    monkeypatch.setattr(sp, "_call_ms", drifting_ms)
    x = torch.zeros(1, 4)
    dense_ms, sparse_ms = sp._interleaved_times([["dense0", "dense1"], ["sparse0", None]], [x, x], reps=5)
    assert calls == ["dense0", "dense1", "sparse0"] * 6
    assert dense_ms == [1.0, 1.0] and sparse_ms == [1.2, None]
    assert sparse_ms[0] > dense_ms[0]

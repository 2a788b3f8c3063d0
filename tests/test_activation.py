"""Activation sparsity: the activation-sparse kernel (every ISA, dtype, tail and batch size)
against a float64 reference, the torch op contract, ActSparseLinear, calibrated thresholds,
TEAL's greedy allocation, R-Sparse's budget and search, WINA, sparsify_ on a tiny HF Llama,
save/load of the recipes, and bad input."""

import math

import pytest
import torch

import sparsecore
from sparsecore.activation import (ActSparseLinear, PrefillPolicy, RSparseConfig, ScoreHistogram, TEALConfig,
                                   WINAConfig, act_sparse_linear, layer_budget, pack_weight, pack_weight_sparse,
                                   reference_act_linear, unpack_weight, unpack_weight_sparse)

from sparsecore.pruning.masks import nm_mask
from sparsecore.ops.act import ACT_VALUE_PAD

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
SHAPES = [(1, 1, 1), (31, 7, 1), (33, 300, 2), (70, 257, 3), (2100, 40, 2), (37, 513, 16), (64, 64, 5),
          (600, 90, 70)]  # many rows: narrower passes and L2-sized channel chunks


def integer_case(out_f, in_f, rows, gen, dtype):
    """Small integers: exact in every dtype and in fp32 accumulation; thresholds at .5 are unambiguous."""
    w = torch.randint(-4, 5, (out_f, in_f), generator=gen).to(dtype)
    x = torch.randint(-4, 5, (rows, in_f), generator=gen).to(dtype)
    return w, x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_kernel_matches_reference(isa, gen, dtype, shape):
    out_f, in_f, rows = shape
    w, x = integer_case(out_f, in_f, rows, gen, dtype)
    packed = pack_weight(w)
    bias = torch.randint(-3, 4, (out_f,), generator=gen).to(dtype)
    scale = torch.randint(1, 4, (in_f,), generator=gen).float()
    for threshold, sc, comp, b in [(1.5, None, False, None), (4.5, scale, False, bias), (1.5, None, True, bias),
                                   (-math.inf, None, False, None), (math.inf, None, False, bias)]:
        got = act_sparse_linear(x, packed, out_f, threshold, scale=sc, bias=b, complement=comp)
        want = reference_act_linear(x, w, threshold, scale=sc, bias=b, complement=comp)
        assert got.dtype == dtype and got.shape == (rows, out_f)
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_kernel_identical_rows_use_union_lists(isa, gen):
    # Identical rows make the union lists the cheaper choice: same answer as per-row work.
    w, x = integer_case(96, 300, 1, gen, torch.bfloat16)
    x = x.expand(7, -1).contiguous()
    got = act_sparse_linear(x, pack_weight(w), 96, 1.5)
    torch.testing.assert_close(got, reference_act_linear(x, w, 1.5), rtol=0, atol=0)


def test_kernel_random_values_and_mixed_dtypes(gen):
    w = torch.randn(300, 500, generator=gen)
    x = torch.randn(3, 4, 500, generator=gen)
    packed = pack_weight(w)
    y = act_sparse_linear(x, packed, 300, 0.7)
    ref = reference_act_linear(x, w, 0.7)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-4)
    # bf16 weight, fp32 activations: the weight's dtype is read as stored, x's dtype is the output's.
    y16 = act_sparse_linear(x, pack_weight(w.bfloat16()), 300, 0.7)
    torch.testing.assert_close(y16, reference_act_linear(x, w.bfloat16().float(), 0.7), rtol=1e-4, atol=1e-3)


def test_kernel_strided_input(gen):
    w, _ = integer_case(40, 64, 1, gen, torch.float32)
    xt = torch.randint(-4, 5, (64, 6), generator=gen).float()
    x = xt.t()  # non-contiguous view
    got = act_sparse_linear(x, pack_weight(w), 40, 1.5)
    torch.testing.assert_close(got, reference_act_linear(x, w, 1.5), rtol=0, atol=0)


def test_sparsity_really_skips_columns(gen):
    # A channel above the threshold changes the output; one below never does, whatever its weight.
    w = torch.randn(8, 4, generator=gen)
    x = torch.tensor([[0.2, 3.0, -0.1, -2.0]])
    w_poisoned = w.clone()
    w_poisoned[:, [0, 2]] = 1e30
    y = act_sparse_linear(x, pack_weight(w_poisoned), 8, 0.5)
    torch.testing.assert_close(y, x[:, [1, 3]] @ w[:, [1, 3]].t())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(31, 7, 1), (300, 70, 3), (2100, 40, 2), (520, 513, 16)])
def test_weight_sparse_runs_match_reference(isa, gen, dtype, shape):
    # Composition: a pruned weight as weight-sparse runs, under activation sparsity.
    out_f, in_f, rows = shape
    w, x = integer_case(out_f, in_f, rows, gen, dtype)
    w[torch.rand(w.shape, generator=gen) < 0.5] = 0
    values, bitmap, offsets = pack_weight_sparse(w)
    assert values.numel() == int((w != 0).sum()) + ACT_VALUE_PAD
    for threshold, comp in [(1.5, False), (1.5, True), (-math.inf, False)]:
        got = act_sparse_linear(x, values, out_f, threshold, complement=comp, sparse_runs=(bitmap, offsets),
                                in_features=in_f)
        torch.testing.assert_close(got, reference_act_linear(x, w, threshold, complement=comp), rtol=0, atol=0)
    assert torch.equal(unpack_weight_sparse(values, bitmap, out_f, in_f), w)


def test_activation_sparsity_on_pruned_layers(gen, tmp_path):
    from sparsecore.nn import SparseLinear

    lin = torch.nn.Linear(64, 48)
    mask = torch.rand(48, 64, generator=gen) < 0.5
    for fmt in ("csr", "nm"):
        m = mask if fmt == "csr" else nm_mask(lin.weight.detach().abs(), 2, 4)
        sl = SparseLinear.from_linear(lin, m, format=fmt)
        act = ActSparseLinear.from_linear(sl, 0.5, prefill=PrefillPolicy("sparse"))
        assert act.weight_sparse and act.packed.numel() == int((sl.weight.to_dense() != 0).sum()) + ACT_VALUE_PAD
        x = torch.randn(3, 64, generator=gen)
        want = reference_act_linear(x, sl.weight.to_dense(), 0.5, bias=sl.bias)
        torch.testing.assert_close(act(x), want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(act.weight, sl.weight.to_dense())


def test_pack_roundtrip(gen):
    w = torch.randn(33, 17, generator=gen).bfloat16()
    p = pack_weight(w)
    assert p.shape == (17, 64) and (p[:, 33:] == 0).all()
    assert torch.equal(unpack_weight(p, 33), w)


def test_opcheck(gen):
    w = torch.randn(40, 24, generator=gen)
    packed = pack_weight(w)
    x = torch.randn(3, 24, generator=gen)
    for scale, bias in [(None, None), (torch.rand(24, generator=gen), torch.randn(40, generator=gen))]:
        torch.library.opcheck(torch.ops.sparsecore.act_linear.default,
                              (packed, None, None, 24, 40, 0.5, scale, bias, False, x))
    w[w.abs() < 0.7] = 0
    values, bitmap, offsets = pack_weight_sparse(w)
    torch.library.opcheck(torch.ops.sparsecore.act_linear.default,
                          (values, bitmap, offsets, 24, 40, 0.5, None, None, False, x))


def test_bad_input(gen):
    w = torch.randn(8, 6, generator=gen)
    packed = pack_weight(w)
    x = torch.randn(2, 6, generator=gen)
    with pytest.raises(ValueError, match="last dimension"):
        act_sparse_linear(torch.randn(2, 5), packed, 8, 0.5)
    with pytest.raises(TypeError, match="dtype"):
        act_sparse_linear(x.to(torch.float64), packed, 8, 0.5)
    with pytest.raises(ValueError, match="threshold is NaN"):
        act_sparse_linear(x, packed, 8, float("nan"))
    with pytest.raises(ValueError, match="scale"):
        act_sparse_linear(x, packed, 8, 0.5, scale=torch.ones(5))
    with pytest.raises(TypeError, match="scale dtype"):
        act_sparse_linear(x, packed, 8, 0.5, scale=torch.ones(6, dtype=torch.float64))
    with pytest.raises(ValueError, match="non-negative|invalid"):
        act_sparse_linear(x, packed, 8, 0.5, scale=-torch.ones(6))
    with pytest.raises(ValueError, match="does not hold"):
        act_sparse_linear(x, packed, 40, 0.5)
    with pytest.raises(ValueError, match="bias"):
        act_sparse_linear(x, packed, 8, 0.5, bias=torch.ones(7))
    with pytest.raises(ValueError, match="2-D"):
        pack_weight(torch.ones(3))
    empty = act_sparse_linear(torch.randn(0, 6), packed, 8, 0.5)
    assert empty.shape == (0, 8)


def test_act_sparse_linear_module(gen):
    lin = torch.nn.Linear(50, 30)
    x = torch.randn(2, 6, 50, generator=gen)
    mod = ActSparseLinear.from_linear(lin, 0.6, prefill=PrefillPolicy("sparse"))
    torch.testing.assert_close(mod(x), reference_act_linear(x, lin.weight.detach(), 0.6, bias=lin.bias.detach()),
                               rtol=1e-5, atol=1e-5)
    # tail policy: the first half of a prompt runs dense, the rest sparse; decode always sparse.
    tail = ActSparseLinear.from_linear(lin, 0.6, prefill=PrefillPolicy("tail", 0.5))
    y = tail(x)
    torch.testing.assert_close(y[:, :3], lin(x[:, :3]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y[:, 3:], mod(x[:, 3:]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(tail(x[:, :1]), mod(x[:, :1]))
    long = torch.randn(1, 80, 50, generator=gen)  # a prompt long enough for the GEMM path
    y = tail(long)
    torch.testing.assert_close(y[:, :40], lin(long[:, :40]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y[:, 40:], reference_act_linear(long[:, 40:], lin.weight.detach(), 0.6,
                                                               bias=lin.bias.detach()), rtol=1e-5, atol=1e-5)
    dense = ActSparseLinear.from_linear(lin, 0.6, prefill=PrefillPolicy("dense"))
    torch.testing.assert_close(dense(x), lin(x), rtol=1e-5, atol=1e-5)
    # bf16 conversion keeps the fp32 scale the kernel reads.
    wina = ActSparseLinear.from_linear(lin, 0.6, scale=lin.weight.detach().norm(dim=0)).to(torch.bfloat16)
    assert wina.scale.dtype == torch.float32 and wina.packed.dtype == torch.bfloat16
    assert wina(x.bfloat16()).dtype == torch.bfloat16
    with pytest.raises(TypeError, match="nn.Linear"):
        ActSparseLinear.from_linear(torch.nn.Conv1d(3, 3, 1), 0.5)
    with pytest.raises(ValueError, match="NaN"):
        ActSparseLinear.from_linear(lin, float("nan"))
    with pytest.raises(ValueError, match="prefill mode"):
        PrefillPolicy("later")
    with pytest.raises(ValueError, match="dense_fraction"):
        PrefillPolicy("tail", 1.5)


def test_lowrank_path_is_r_sparse_formula(gen):
    lin = torch.nn.Linear(40, 24, bias=False)
    w = lin.weight.detach()
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    r = 5
    down, up = vh[:r], u[:, :r] * s[:r]
    scale = w.norm(dim=0)
    mod = ActSparseLinear.from_linear(lin, 0.8, scale=scale, lowrank=(down, up), prefill=PrefillPolicy("sparse"))
    for rows in (3, 70):  # the kernel, and torch's GEMM on the packed weight for many fp32 rows
        x = torch.randn(rows, 40, generator=gen)
        m = (x.abs() * scale > 0.8).float()
        want = (x * m) @ w.t() + ((x * (1 - m)) @ down.t()) @ up.t()
        torch.testing.assert_close(mod(x), want, rtol=1e-5, atol=1e-5)
        nan_x = x.clone()
        nan_x[1, 2] = float("nan")
        got = mod(nan_x)  # the rule on both paths: NaN reaches its row of the output, never dropped
        assert torch.isnan(got[1]).all() and torch.isfinite(got[0]).all()
    # Full rank: the low-rank path is exact, so nothing is lost.
    full = ActSparseLinear.from_linear(lin, 0.8, scale=scale, lowrank=(vh, u * s), prefill=PrefillPolicy("sparse"))
    torch.testing.assert_close(full(x), lin(x), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="lowrank"):
        ActSparseLinear.from_linear(lin, 0.8, lowrank=(down, up[:, :3]))


def test_histogram_thresholds_hit_the_target(gen):
    h = ScoreHistogram()
    data = torch.randn(200000, generator=gen).abs()
    data[:1000] = 0
    h.update(data)
    for s in (0.1, 0.3, 0.5, 0.9):
        t = h.threshold(s)
        assert abs(float((data <= t).float().mean()) - s) < 2e-3
        assert abs(h.sparsity_at(t) - s) < 2e-3
    assert h.threshold(0.0) < 0 and h.threshold(0.004) == 0.0  # exact zeros go first
    with pytest.raises(ValueError, match="sparsity"):
        h.threshold(1.0)
    with pytest.raises(ValueError, match="NaN"):
        h.update(torch.tensor([float("nan")]))
    with pytest.raises(ValueError, match="empty"):
        ScoreHistogram().threshold(0.5)


def test_r_sparse_budget():
    b = layer_budget(4096, 4096, 0.5, 0.8)
    assert b.channels == round(4096 * 0.5 * 0.8)
    assert b.rank == int((4096 * 4096 * 0.5 - b.channels * 4096) // 8192)
    # The budget is the weight bytes: channels * out + rank * (in + out) ~ (1 - s) * in * out.
    assert abs(b.channels * 4096 + b.rank * 8192 - 0.5 * 4096 * 4096) <= 8192
    assert layer_budget(100, 50, 0.5, 1.0).rank == 0
    with pytest.raises(ValueError):
        layer_budget(10, 10, 1.0, 0.5)
    with pytest.raises(ValueError):
        layer_budget(10, 10, 0.5, 1.5)


transformers = pytest.importorskip("transformers")


def tiny_llama(seed=0):
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    return transformers.LlamaForCausalLM(config).eval()


def calibration(gen, n=4, length=32):
    return [{"input_ids": torch.randint(0, 96, (1, length), generator=gen), "use_cache": False} for _ in range(n)]


def measured_sparsity(model, batches):
    """Fraction of inputs the installed ActSparseLinear layers drop, weighted by parameters."""
    dropped, total = [], []
    hooks = []
    for m in model.modules():
        if isinstance(m, ActSparseLinear):
            def hook(mod, args, out):
                x = args[0]
                score = x.abs().float() * (mod.scale if mod.scale is not None else 1.0)
                frac = float((score <= mod.threshold).float().mean())
                dropped.append(frac * mod.in_features * mod.out_features)
                total.append(mod.in_features * mod.out_features)
            hooks.append(m.register_forward_hook(hook))
    with torch.no_grad():
        for b in batches:
            model(**b)
    for h in hooks:
        h.remove()
    return sum(dropped) / sum(total)


@pytest.mark.parametrize("config_cls,allocation", [(TEALConfig, "greedy"), (TEALConfig, "uniform"),
                                                   (WINAConfig, "greedy")])
def test_sparsify_teal_wina(gen, config_cls, allocation):
    model = tiny_llama()
    cal = calibration(gen)
    held_out = calibration(torch.Generator().manual_seed(99))
    ids = held_out[0]["input_ids"]
    with torch.no_grad():
        dense_logits = model(ids).logits
    report = sparsecore.sparsify_(model, config_cls(0.5, calibration=cal, allocation=allocation,
                                                    prefill=PrefillPolicy("sparse"), progress=False))
    layers = [m for m in model.modules() if isinstance(m, ActSparseLinear)]
    assert len(layers) == 21 and isinstance(model.lm_head, torch.nn.Linear)  # lm_head (tied) left alone
    assert abs(report.achieved - 0.5) < 1e-6
    # Thresholds calibrated on one text reach about the target on another.
    assert abs(measured_sparsity(model, held_out) - 0.5) < 0.08
    qkv = {m.target_sparsity for n, m in model.named_modules() if n.startswith("model.layers.0.self_attn.")
           and n.rsplit(".", 1)[-1] in ("q_proj", "k_proj", "v_proj")}
    assert len(qkv) == 1  # q/k/v share one level
    with torch.no_grad():
        logits = model(ids).logits
    assert torch.isfinite(logits).all() and not torch.equal(logits, dense_logits)
    out = model.generate(ids[:, :5], max_new_tokens=4, do_sample=False)
    assert out.shape == (1, 9)
    assert "target 50%" in str(report)


def test_greedy_beats_uniform_on_block_error(gen):
    from sparsecore.activation import ActivationCalibration

    model = tiny_llama(seed=3)
    cal = calibration(gen, n=4)
    c = ActivationCalibration(model, cal, weighted=False, progress=False)
    greedy = c.levels([0.5], "greedy", 0.1, 4)[0.5]
    levels = sorted(set(round(v, 3) for v in greedy.values()))
    assert len(levels) > 1  # the allocation is not uniform


def test_sparsify_rsparse_and_save_load(gen, tmp_path):
    model = tiny_llama()
    cal = calibration(gen)
    # prefill_tokens=None: the kernel at every length, as in a freshly loaded layer (the measured
    # prefill choice is per machine and not saved), so outputs compare bit for bit.
    report = sparsecore.sparsify_(model, RSparseConfig(0.5, calibration=cal, generations=2, population=4,
                                                       prefill=PrefillPolicy("sparse"), progress=False,
                                                       prefill_tokens=None))
    assert abs(report.achieved - 0.5) < 0.01
    assert len(report.search_history) == 3 and report.search_history[-1] <= report.search_history[0]
    layers = {n: m for n, m in model.named_modules() if isinstance(m, ActSparseLinear)}
    assert any(m.rank > 0 for m in layers.values())
    ids = cal[0]["input_ids"]
    with torch.no_grad():
        before = model(ids).logits
    path = tmp_path / "m.safetensors"
    sparsecore.save_sparse(model, str(path))
    fresh = tiny_llama()
    sparsecore.load_sparse(fresh, str(path))
    loaded = {n: m for n, m in fresh.named_modules() if isinstance(m, ActSparseLinear)}
    assert set(loaded) == set(layers)
    for n, m in layers.items():
        assert loaded[n].threshold == m.threshold and loaded[n].rank == m.rank
        assert loaded[n].prefill == m.prefill and loaded[n].method == "rsparse"
    with torch.no_grad():
        assert torch.equal(fresh(ids).logits, before)


def test_config_errors(gen):
    model = tiny_llama()
    with pytest.raises(ValueError, match="sparsity"):
        sparsecore.sparsify_(model, TEALConfig(1.2, calibration=calibration(gen)))
    with pytest.raises(ValueError, match="sparsity"):
        sparsecore.sparsify_(model, WINAConfig(-0.1, calibration=calibration(gen)))
    with pytest.raises(ValueError, match="calibration"):
        sparsecore.sparsify_(model, TEALConfig(0.5))
    with pytest.raises(ValueError, match="allocation"):
        sparsecore.sparsify_(model, TEALConfig(0.5, calibration=calibration(gen), allocation="owl"))
    with pytest.raises(ValueError, match="population"):
        sparsecore.sparsify_(model, RSparseConfig(0.5, calibration=calibration(gen), population=2))
    with pytest.raises(TypeError, match="nn.Linear"):
        sparsecore.sparsify_(model, TEALConfig(0.5, calibration=calibration(gen), progress=False),
                             filter_fn=lambda m, n: n.endswith("input_layernorm"))
    with pytest.raises(ValueError, match="no nn.Linear"):
        sparsecore.sparsify_(model, TEALConfig(0.5, calibration=calibration(gen), progress=False),
                             filter_fn=lambda m, n: False)
    assert not any(isinstance(m, ActSparseLinear) for m in model.modules())  # nothing changed


def test_compile_and_bf16(gen):
    model = tiny_llama()
    cal = calibration(gen)
    sparsecore.sparsify_(model, TEALConfig(0.4, calibration=cal, allocation="uniform", progress=False))
    ids = cal[0]["input_ids"]
    with torch.no_grad():
        eager = model(ids).logits
        compiled = torch.compile(model, fullgraph=True)
        torch.testing.assert_close(compiled(ids).logits, eager, rtol=1e-4, atol=1e-4)
        model.to(torch.bfloat16)
        logits16 = model(ids).logits
    assert logits16.dtype == torch.bfloat16 and torch.isfinite(logits16.float()).all()


def test_teal_on_a_pruned_model_composes(gen):
    model = tiny_llama()
    cal = calibration(gen)
    sparsecore.sparsify_(model, sparsecore.MagnitudeConfig(sparsity=0.5, fallback_to_dense=False))
    pruned = {n: m.weight.to_dense() for n, m in model.named_modules() if isinstance(m, sparsecore.nn.SparseLinear)}
    sparsecore.sparsify_(model, TEALConfig(0.5, calibration=cal, allocation="uniform", progress=False))
    layers = {n: m for n, m in model.named_modules() if isinstance(m, ActSparseLinear)}
    assert set(layers) == set(pruned)
    for n, m in layers.items():
        assert m.weight_sparse and torch.equal(m.weight, pruned[n])
    with torch.no_grad():
        assert torch.isfinite(model(cal[0]["input_ids"]).logits).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("out_f,in_f", [(1, 1), (37, 19), (300, 64), (600, 5)])
def test_unpack_runs_is_exact(dtype, out_f, in_f, gen):
    from sparsecore.activation.kernel import pack_weight_sparse

    w = (torch.randn(out_f, in_f, generator=gen) * (torch.rand(out_f, in_f, generator=gen) > 0.6)).to(dtype)
    values, bitmap, offsets = pack_weight_sparse(w)
    wt = torch.ops.sparsecore.act_unpack_runs(values, bitmap, offsets, in_f, out_f)
    assert wt.shape == (in_f, out_f) and wt.dtype == dtype
    assert torch.equal(wt.t(), w)
    torch.library.opcheck(torch.ops.sparsecore.act_unpack_runs, (values, bitmap, offsets, in_f, out_f))


def test_unpack_runs_bad_inputs(gen):
    from sparsecore.activation.kernel import pack_weight_sparse

    w = torch.randn(40, 12, generator=gen) * (torch.rand(40, 12, generator=gen) > 0.5)
    values, bitmap, offsets = pack_weight_sparse(w)
    op = torch.ops.sparsecore.act_unpack_runs
    bad = offsets.clone()
    bad[3] = 10**9
    with pytest.raises(ValueError):
        op(values, bitmap, bad, 12, 40)
    full = bitmap.clone()
    full[:] = 0xFF  # every bit set: more stored entries than values
    with pytest.raises(ValueError):
        op(values, full, offsets, 12, 40)
    with pytest.raises(ValueError):
        op(values, bitmap[:-1], offsets, 12, 40)
    with pytest.raises(ValueError):
        op(values[:5], bitmap, offsets, 12, 40)
    with pytest.raises(TypeError):
        op(values, bitmap.to(torch.int32), offsets, 12, 40)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("gemm_wins_from", [None, 16, 64])
def test_prefill_gemm_choice_follows_the_measurement(dtype, gemm_wins_from, gen, monkeypatch):
    """TEAL on a pruned model: the prefill path (kernel or masked dense GEMM over the runs
    written densely) is chosen per layer by measurement and computes the same product."""
    import sparsecore.kernel_choice as sp

    model = tiny_llama()
    cal = calibration(gen)
    sparsecore.sparsify_(model, sparsecore.MagnitudeConfig(sparsity=0.5, fallback_to_dense=False))
    model.to(dtype)

    def fake_ms(fn, x):
        gemm = getattr(fn, "gemm", False)
        return 0.5 if gemm and gemm_wins_from is not None and x.shape[-2] >= gemm_wins_from else 1.0

    monkeypatch.setattr(sp, "_call_ms", fake_ms)
    sparsecore.sparsify_(model, TEALConfig(0.5, calibration=cal, allocation="uniform", progress=False,
                                           prefill=PrefillPolicy("sparse")))
    monkeypatch.undo()
    layers = [m for m in model.modules() if isinstance(m, ActSparseLinear)]
    assert layers and all(m.gemm_from_tokens == gemm_wins_from for m in layers)
    for m in layers:
        x = torch.randn(1, 70, m.in_features, generator=gen).to(dtype)
        ref = (x.double() * ~(x.double().abs() <= m.threshold)) @ m.weight.double().t()
        chosen = m(x).double()
        m.gemm_from_tokens = None
        kernel = m(x).double()
        # Both paths are the float64 product up to rounding of the output dtype.
        ulp = ref.abs().max().item() * (2 ** -7 if dtype == torch.bfloat16 else 2 ** -20)
        err, kernel_err = (chosen - ref).abs().max().item(), (kernel - ref).abs().max().item()
        assert err <= 2 * ulp + 2 * kernel_err, (err, kernel_err, ulp)

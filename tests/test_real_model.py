"""The real SmolLM2 and Wikipedia text (installed by scripts/setup.sh): loading, perplexity, Wanda.

Small slices keep this under a minute on 2 cores; the full tables come from the CLI/benchmarks.
"""

import pytest
import torch

from sparsecore.models import load_smollm2, perplexity, wiki_text
from sparsecore.pruning import magnitude_mask, wanda_prune_


@pytest.fixture(scope="module")
def smollm2():
    return load_smollm2()


@pytest.fixture(scope="module")
def eval_ids(smollm2):
    _, tok = smollm2
    return tok(wiki_text("eval")[:20000], return_tensors="pt").input_ids[0][:1025]


def test_text_splits_are_disjoint_and_deterministic():
    ev, cal = wiki_text("eval"), wiki_text("calibration")
    assert len(cal) > 5 * len(ev) > 0
    first_eval_article = ev.split("\n\n")[0]
    assert first_eval_article not in cal
    assert wiki_text("eval") == ev
    with pytest.raises(ValueError, match="split"):
        wiki_text("train")


def test_greedy_generation_and_dense_perplexity(smollm2, eval_ids):
    model, tok = smollm2
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=6, do_sample=False)
    assert "Paris" in tok.decode(out[0])
    ppl = perplexity(model, eval_ids, window=1024)
    assert 5.0 < ppl < 25.0, ppl


def test_wanda_beats_magnitude_at_half_sparsity(smollm2, eval_ids):
    model, tok = smollm2
    state = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        cal = tok(wiki_text("calibration")[:50000], return_tensors="pt").input_ids[0]
        batches = [{"input_ids": cal[i * 256:(i + 1) * 256].unsqueeze(0), "use_cache": False} for i in range(4)]
        report = wanda_prune_(model, list(model.model.layers), batches, sparsity=0.5, progress=False)
        assert len(report) == 7 * len(model.model.layers)
        assert all(abs(v - 0.5) < 1e-3 for v in report.values())
        ppl_wanda = perplexity(model, eval_ids, window=1024)
        model.load_state_dict(state)
        with torch.no_grad():
            for layer in model.model.layers:
                for mod in layer.modules():
                    if isinstance(mod, torch.nn.Linear):
                        mod.weight.mul_(magnitude_mask(mod.weight, 0.5))
        ppl_magnitude = perplexity(model, eval_ids, window=1024)
        assert ppl_wanda < 0.5 * ppl_magnitude, (ppl_wanda, ppl_magnitude)
    finally:
        model.load_state_dict(state)


def test_teal_and_wina_on_real_text(smollm2, eval_ids):
    """Activation sparsity calibrated on real text: thresholds reach the target on held-out
    text and quality degrades gracefully (TEAL reports small losses at 40%)."""
    from sparsecore.activation import ActivationCalibration, PrefillPolicy, install, restore
    from sparsecore.models.recipes import calibration_batches

    model, tok = smollm2
    dense = perplexity(model, eval_ids, window=1024)
    calibration = calibration_batches(tok, 4, 256)
    for weighted, method in ((False, "teal"), (True, "wina")):
        calib = ActivationCalibration(model, calibration, weighted=weighted, progress=False)
        modules, report = calib.build(calib.levels([0.4], "uniform")[0.4], method, PrefillPolicy("sparse"), 0.4)
        seen = []
        hooks = [m.register_forward_pre_hook(lambda m, a: seen.append(float(
            ((a[0].abs().float() * (m.scale if m.scale is not None else 1.0)) <= m.threshold).float().mean())))
            for m in modules.values()]
        originals = install(model, modules)
        try:
            ppl = perplexity(model, eval_ids, window=1024)
        finally:
            restore(model, originals)
            for h in hooks:
                h.remove()
        assert abs(sum(seen) / len(seen) - 0.4) < 0.05, (method, sum(seen) / len(seen))
        assert dense < ppl < 1.4 * dense, (method, dense, ppl)

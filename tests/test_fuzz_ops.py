"""Property-based fuzzing of the raw ops (torch.ops.sparsecore.*) with corrupted contents.

Each case builds a valid matrix, takes the exact argument tuple the public path passes,
and corrupts the contents of one tensor (same dtype and shape: random bits, one extreme
entry, one flipped bit), as a format edited through ``.data`` / ``.numpy()`` after
validation would be. The outcome must be a clean ValueError/TypeError or a result equal
to the float64 reference of what the arguments mean (tests/fuzz_reference.py); a crash
fails the whole run. The CI profile runs a bounded number of cases; ``-m fuzz_long`` (or
SPARSECORE_FUZZ_EXAMPLES) runs more. Outcome counts are printed at the end of the session.
"""

import math
import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import sparsecore
from sparsecore import BSR, CSR, NM
from sparsecore.activation import pack_weight, pack_weight_sparse
from sparsecore.attention import BlockMask
from sparsecore.ops.linear import _op_args
import fuzz_reference as ref
from conftest import OUTCOMES

EXAMPLES = int(os.environ.get("SPARSECORE_FUZZ_EXAMPLES", "300"))
FAMILIES = ["csr", "csr-bitmap", "bsr", "nm", "act", "act-runs"]


def _corrupt(t: torch.Tensor, how: str, draw) -> torch.Tensor:
    """A copy of t with corrupted contents (same dtype, same shape)."""
    t = t.clone()
    if t.numel() == 0:
        return t
    raw = t.view(torch.uint8).reshape(-1) if t.dtype != torch.bool else t.reshape(-1)
    i = draw(st.integers(0, raw.numel() - 1))
    if how == "bitflip":
        raw[i] ^= 1 << draw(st.integers(0, 7))
    elif how == "random":
        gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
        raw.copy_(torch.randint(0, 256, raw.shape, dtype=torch.uint8, generator=gen))
    else:  # one extreme entry
        flat = t.reshape(-1)
        j = draw(st.integers(0, flat.numel() - 1))
        if t.dtype.is_floating_point:
            flat[j] = draw(st.sampled_from([float("nan"), float("inf"), -1e30, 1e4]))
        else:
            info = torch.iinfo(t.dtype)
            flat[j] = draw(st.sampled_from([info.max, info.min, -1, 10**4 % (info.max + 1)]))
    return t


def _case(family: str, draw):
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    rows = draw(st.integers(1, 40))
    cols = draw(st.sampled_from([8, 16, 24, 40, 64, 96]))
    n = draw(st.sampled_from([1, 2, 5, 9, 33]))
    dtype = draw(st.sampled_from([torch.float32, torch.bfloat16, torch.float16]))
    vals = (torch.randint(-8, 9, (rows, cols), generator=gen) / 8).float()
    keep = torch.rand(rows, cols, generator=gen) < draw(st.sampled_from([0.1, 0.5, 0.9]))
    x = (torch.randint(-8, 9, (n, cols), generator=gen) / 4).to(dtype)
    bias = (torch.randint(-4, 5, (rows,), generator=gen)).to(dtype) if draw(st.booleans()) else None
    if family in ("act", "act-runs"):
        w = torch.where(keep, vals, torch.zeros(()))
        threshold = 0.3
        if family == "act":
            args = [pack_weight(w.to(dtype)), None, None, cols, rows, threshold, None, bias, False, x]
        else:
            values, bitmap, offsets = pack_weight_sparse(w.to(dtype))
            args = [values, bitmap, offsets, cols, rows, threshold, None, bias, False, x]
        return "act_linear", args, [i for i in (0, 1, 2, 7, 9) if isinstance(args[i], torch.Tensor)]
    if family == "bsr":
        bh = draw(st.sampled_from([1, 2, 4, 8]))
        rows = -(-rows // bh) * bh
        vals = (torch.randint(-8, 9, (rows, cols), generator=gen) / 8).float()
        bmask = torch.rand(rows // bh, cols // 4, generator=gen) < 0.5
        a = BSR.from_dense(vals * bmask.repeat_interleave(bh, 0).repeat_interleave(4, 1), (bh, 4),
                           block_mask=bmask, dtype=dtype)
        bias = bias if bias is None else torch.zeros(rows, dtype=dtype)
    elif family == "nm":
        m = draw(st.sampled_from([2, 4, 8]))
        nn_ = draw(st.integers(1, m - 1))
        w = vals * sparsecore.formats.nm.select_nm_mask(torch.rand(rows, cols, generator=gen), nn_, m)
        a = NM.from_dense(w, nn_, m, dtype=dtype)
    else:
        a = CSR.from_dense(torch.where(keep, vals, torch.zeros(())), dtype=dtype, bitmap=family == "csr-bitmap")
    op, fmt_args = _op_args(a)
    args = [*fmt_args, x, bias, True]
    tensors = [i for i, v in enumerate(args) if isinstance(v, torch.Tensor)]
    return f"{op}_mm", args, tensors


def _reference(op, args):
    if op == "csr_mm":
        return ref.csr(*args[:6], args[6].reshape(-1, args[6].shape[-1]).shape[0]), args[6], args[7]
    if op == "bsr_mm":
        return ref.bsr(*args[:5]), args[5], args[6]
    if op == "nm_mm":
        return ref.nm(*args[:6]), args[6], args[7]
    packed, bitmap, offsets, in_f, out_f, threshold, scale, bias, _complement, x = args
    active = (x.double().abs() > threshold).any(0).numpy() | ~torch.isfinite(x.double()).all(0).numpy()
    if bitmap is None:
        a = ref.act_dense(packed, out_f)
    else:
        a = ref.act_runs(packed, bitmap, offsets, in_f, out_f, active)
    if a is None:
        return None, x, bias
    # The activation mask: channels at or below the threshold contribute nothing.
    xm = x.double().clone()
    xm[x.double().abs() <= threshold] = 0.0
    return a, xm, bias


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(data=st.data())
def test_raw_ops_never_crash_and_never_lie(data):
    family = data.draw(st.sampled_from(FAMILIES))
    op, args, tensors = _case(family, data.draw)
    which = data.draw(st.sampled_from(tensors))
    how = data.draw(st.sampled_from(["bitflip", "random", "extreme"]))
    args[which] = _corrupt(args[which], how, data.draw)
    isa = data.draw(st.sampled_from(sparsecore.available_cpu_isas()))
    try:
        with sparsecore.use_cpu_isa(isa):
            got = getattr(torch.ops.sparsecore, op)(*args)
    except (ValueError, TypeError):
        OUTCOMES["raw ops: clean error"] += 1
        return
    a, x, bias = _reference(op, args)
    assert a is not None, f"{op}: corrupted argument {which} ({how}) was accepted silently"
    assert ref.matches(got, a, x, bias if bias is None else bias.double()), f"{op}: result differs from the reference after corrupting argument {which}"
    OUTCOMES["raw ops: equal to the reference"] += 1


@pytest.mark.fuzz_long
@settings(max_examples=20 * EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_raw_ops_long(data):
    test_raw_ops_never_crash_and_never_lie.hypothesis.inner_test(data)


def _attention_case(draw):
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    B, hkv = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    hq = hkv * draw(st.sampled_from([1, 3]))
    lk = draw(st.integers(1, 90))
    lq = draw(st.integers(1, lk))
    d = draw(st.sampled_from([16, 20, 64]))
    dtype = draw(st.sampled_from([torch.float32, torch.bfloat16]))
    q, k, v = (torch.randn(B, h, n, d, generator=gen).to(dtype) for h, n in ((hq, lq), (hkv, lk), (hkv, lk)))
    bq, bk = draw(st.sampled_from([16, 32])), draw(st.sampled_from([16, 48]))
    qb, kb = -(-lq // bq), -(-lk // bk)
    mh = draw(st.sampled_from([1, hkv, hq]))
    grid = torch.rand(1, mh, qb, kb, generator=gen) < 0.6
    m = BlockMask.from_dense(grid, q_len=lq, kv_len=lk, block_q=bq, block_k=bk)
    window = draw(st.sampled_from([0, 0, 5, 40]))
    args = [q, k, v, m.row_ptr.clone(), m.col_idx.clone(), bq, bk, 1, mh,
            torch.zeros(B, dtype=torch.int64), torch.full((B,), lk, dtype=torch.int64), True, window,
            draw(st.sampled_from([0, 2])), 0.125, 0.0, -math.inf]
    return args


@settings(max_examples=EXAMPLES // 3, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(data=st.data())
def test_attention_op_never_crashes_and_never_lies(data):
    """flash_attention with corrupted block lists, KV ranges or non-finite q/k/v."""
    args = _attention_case(data.draw)
    which = data.draw(st.sampled_from([0, 1, 2, 3, 4, 9, 10]))
    if which <= 2:  # values: inject NaN / Inf (the NaN rule), or leave them alone
        t = args[which].clone()
        flat = t.reshape(-1)
        flat[data.draw(st.integers(0, flat.numel() - 1))] = data.draw(st.sampled_from([float("nan"), float("inf")]))
        args[which] = t
    else:
        args[which] = _corrupt(args[which], data.draw(st.sampled_from(["bitflip", "random", "extreme"])), data.draw)
    isa = data.draw(st.sampled_from(sparsecore.available_cpu_isas()))
    try:
        with sparsecore.use_cpu_isa(isa):
            got = torch.ops.sparsecore.flash_attention(*args)[0]
    except (ValueError, TypeError):
        OUTCOMES["attention op: clean error"] += 1
        return
    want = ref.attention(*args[:15])
    assert want is not None, f"corrupted argument {which} was accepted silently"
    out, nan_rows = want
    g = got.double().numpy()
    assert np.isnan(g).any(-1)[nan_rows].all() if nan_rows.any() else True, "a NaN-rule row is not NaN"
    fine = ~nan_rows
    tol = 2e-5 if got.dtype == torch.float32 else 1.5e-2
    assert np.isfinite(g[fine]).all() and np.allclose(g[fine], out[fine], atol=tol, rtol=tol), \
        f"result differs from the reference after corrupting argument {which}"
    OUTCOMES["attention op: equal to the reference"] += 1


@pytest.mark.parametrize("isa", sparsecore.available_cpu_isas())
def test_every_isa_path_survives_corrupted_indices(isa):
    """The same corruption classes on each ISA path (the property test runs the default one)."""
    with sparsecore.use_cpu_isa(isa):
        gen = torch.Generator().manual_seed(5)
        w = torch.randn(30, 64, generator=gen) * (torch.rand(30, 64, generator=gen) < 0.4)
        for bitmap in (False, True):
            a = CSR.from_dense(w, bitmap=bitmap)
            for n in ((1, 4) if bitmap else (1, 4, 20)):  # the bitmap plan is read up to 8 columns
                col = a.col_idx.clone()
                col[3] = 64
                bits = a.bitmap.clone()
                if bits.numel():
                    bits[0] ^= 0x10
                with pytest.raises(ValueError, match="outside the matrix"):
                    torch.ops.sparsecore.csr_mm(a.row_ptr, col if not bitmap else a.col_idx, a.values, a.row_chunks,
                                                bits, 64, torch.ones(n, 64), None, True)
        nmw = NM.from_dense(w * sparsecore.formats.nm.select_nm_mask(torch.rand(30, 64, generator=gen), 2, 4))
        bits = nmw.bitmap.clone()
        bits[2, 1] = 0xFF
        for n in (1, 20):
            with pytest.raises(ValueError, match="outside the matrix"):
                torch.ops.sparsecore.nm_mm(nmw.values, bits, nmw.mma_meta, 2, 4, 64, torch.ones(n, 64), None, True)

"""Sparse flash attention: the kernel against a float64 reference on every ISA path and
dtype, the block masks and estimators, BLASST, Quest, HF integration, torch.library and
bad input."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

import sparsecore
from sparsecore.attention import (BLASSTConfig, BlockMask, PageBounds, QuestCache, QuestConfig,
                                  StaticAttentionConfig, TopKAttentionConfig, flash_attention, page_scores,
                                  quest_block_mask, sparsify_attention_, topk_blocks, vertical_slash_blocks)

TOL = {torch.float32: 2e-5, torch.bfloat16: 1.5e-2, torch.float16: 2e-3}


def reference(q, k, v, *, causal=True, window=0, sinks=0, scale=None, softcap=0.0, kv_start=None, kv_end=None,
              block_mask=None, return_visible=False):
    """float64 attention with the position rules of sparsecore/attention.h; returns (out, lse)
    (and the boolean visibility [B, Hq, Lq, Lk] with ``return_visible``)."""
    q, k, v = q.double(), k.double(), v.double()
    B, hq, lq, d = q.shape
    hkv, lk = k.shape[1], k.shape[2]
    scale = 1 / math.sqrt(d) if scale is None else scale
    k = k.repeat_interleave(hq // hkv, 1)
    v = v.repeat_interleave(hq // hkv, 1)
    s = torch.einsum("bhid,bhjd->bhij", q, k) * scale
    if softcap:
        s = softcap * torch.tanh(s / softcap)
    pos = torch.arange(lq)[:, None] + lk - lq
    j = torch.arange(lk)[None, :]
    vis = torch.ones(B, 1, lq, lk, dtype=torch.bool)
    for b in range(B):
        start = 0 if kv_start is None else int(kv_start[b])
        end = lk if kv_end is None else int(kv_end[b])
        ok = ((j >= start) & (j < end)).expand(lq, lk).clone()
        if causal:
            ok &= j <= pos
        if window:
            ok &= (pos - j < window) | (j < start + sinks)
        vis[b, 0] = ok
    if block_mask is not None:
        dense = block_mask.to_dense()  # [mb, mh, qb, kb]
        if dense.shape[1] not in (1, hq):  # one mask per KV head: expand to the group
            dense = dense.repeat_interleave(hq // dense.shape[1], 1)
        el = dense.repeat_interleave(block_mask.block_q, 2)[:, :, :lq].repeat_interleave(block_mask.block_k, 3)
        vis = vis & el[..., :lk]
    s = s.masked_fill(~vis, -math.inf)
    lse = torch.logsumexp(s, -1)
    p = torch.exp(s - lse[..., None]).nan_to_num(0.0)
    out = p @ v
    if return_visible:
        return out, lse, vis.expand(B, hq, lq, lk)
    return out, lse


def rand(*shape, dtype=torch.float32, gen=None, scale=1.0):
    return (torch.randn(*shape, generator=gen) * scale).to(dtype)


def check(got, want, dtype):
    tol = TOL[dtype]
    err = (got.double() - want).abs() / (1 + want.abs())
    assert err.max().item() <= tol, f"max error {err.max().item():.3g} > {tol}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("hq,hkv", [(4, 4), (6, 2), (8, 1)])
@pytest.mark.parametrize("lq,lk,d", [(1, 33, 64), (7, 7, 96), (65, 130, 128), (20, 90, 256)])
def test_dense_against_float64(isa, dtype, hq, hkv, lq, lk, d, gen):
    q, k, v = (rand(2, h, n, d, dtype=dtype, gen=gen) for h, n in ((hq, lq), (hkv, lk), (hkv, lk)))
    out, lse = flash_attention(q, k, v, return_lse=True)
    want, want_lse = reference(q, k, v)
    assert out.dtype == dtype and out.shape == q.shape
    check(out, want, dtype)
    assert torch.allclose(lse.double(), want_lse, atol=1e-4, rtol=1e-5)


def test_long_query_odd_kv(isa, gen):
    q, k, v = rand(1, 3, 1000, 64, gen=gen), rand(1, 1, 1003, 64, gen=gen), rand(1, 1, 1003, 64, gen=gen)
    check(flash_attention(q, k, v), reference(q, k, v)[0], torch.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_positions_window_sinks_padding_softcap(isa, dtype, gen):
    q, k, v = rand(3, 4, 50, 64, dtype=dtype, gen=gen), rand(3, 2, 150, 64, dtype=dtype, gen=gen), \
        rand(3, 2, 150, 64, dtype=dtype, gen=gen)
    kv_start, kv_end = [0, 7, 3], [150, 150, 140]
    for kwargs in (dict(window=40, sinks=4), dict(window=17), dict(causal=False), dict(softcap=5.0, scale=0.3),
                   dict(kv_start=kv_start, kv_end=kv_end), dict(window=30, sinks=2, kv_start=kv_start, kv_end=kv_end)):
        got = flash_attention(q, k, v, **kwargs)
        check(got, reference(q, k, v, **kwargs)[0], dtype)


def test_hf_layouts_need_no_copy(gen):
    """q/k/v as HF produces them ([B, L, H, D] transposed to [B, H, L, D]) and sliced caches."""
    base = rand(2, 40, 6, 64, gen=gen)
    q = base.transpose(1, 2)
    kv = rand(2, 60, 2, 64, gen=gen).transpose(1, 2)
    k, v = kv[:, :, :50], kv[:, :, 10:]
    assert not q.is_contiguous()
    check(flash_attention(q, k, v), reference(q, k, v)[0], torch.float32)
    # A head dim that is not contiguous is copied, not misread.
    q2 = rand(2, 6, 64, 40, gen=gen).transpose(2, 3)
    check(flash_attention(q2, k, v), reference(q2, k, v)[0], torch.float32)


def test_empty_rows_give_zeros_and_minus_inf_lse():
    q, k, v = torch.ones(1, 1, 4, 16), torch.ones(1, 1, 8, 16), torch.ones(1, 1, 8, 16)
    out, lse = flash_attention(q, k, v, kv_start=[6], kv_end=[8], return_lse=True)
    # positions 4..7; keys 6, 7 valid: rows 0 and 1 see nothing.
    assert out[0, 0, :2].abs().sum() == 0 and torch.isneginf(lse[0, 0, :2]).all()
    assert torch.allclose(out[0, 0, 2:], torch.ones(2, 16))
    mask = BlockMask.from_dense(torch.tensor([[False]]), q_len=4, kv_len=8, block_q=16, block_k=16)
    out, lse = flash_attention(q, k, v, block_mask=mask, return_lse=True)
    assert out.abs().sum() == 0 and torch.isneginf(lse).all()


def test_nonfinite_rule():
    q, k, v = torch.rand(1, 2, 4, 16), torch.rand(1, 1, 8, 16), torch.rand(1, 1, 8, 16)
    q[0, 1, 0, 3] = float("nan")
    v[0, 0, 6, 0] = float("inf")  # key 6: seen by rows at positions >= 6 (rows 2, 3)
    out, lse = flash_attention(q, k, v, return_lse=True)
    nan_rows = torch.isnan(out).any(-1)
    assert nan_rows.tolist() == [[[False, False, True, True], [True, False, True, True]]]
    assert torch.isnan(lse).tolist() == nan_rows.tolist()
    assert torch.isfinite(out[~nan_rows]).all()


@pytest.mark.parametrize("heads", ["shared", "kv", "q"])
def test_block_mask_against_float64(isa, heads, gen):
    B, hq, hkv, lq, lk = 2, 6, 2, 100, 200
    q, k, v = rand(B, hq, lq, 64, gen=gen), rand(B, hkv, lk, 64, gen=gen), rand(B, hkv, lk, 64, gen=gen)
    nh = {"shared": 1, "kv": hkv, "q": hq}[heads]
    grid = torch.rand(B, nh, 4, 7, generator=gen) < 0.5
    mask = BlockMask.from_dense(grid, q_len=lq, kv_len=lk, block_q=32, block_k=32)
    got = flash_attention(q, k, v, block_mask=mask)
    check(got, reference(q, k, v, block_mask=mask)[0], torch.float32)


def test_block_mask_builders():
    m = BlockMask.causal(300, 300, block_q=64, block_k=64)
    assert torch.equal(m.to_dense()[0, 0], torch.ones(5, 5, dtype=torch.bool).tril())
    w = BlockMask.sliding_window(256, 256, 64, sinks=4)
    assert w.to_dense()[0, 0, 3].tolist() == [True, False, True, True]
    # Chunked prefill: 64 queries at the end of 256 keys.
    c = BlockMask.causal(64, 256)
    assert c.to_dense()[0, 0, 0].tolist() == [True] * 4
    assert 0 < w.density() < 1 and m.nnz == 15


def test_block_mask_from_flex():
    flex = pytest.importorskip("torch.nn.attention.flex_attention")
    fm = flex.create_block_mask(lambda b, h, q, kv: q >= kv, None, None, 256, 256, device="cpu", BLOCK_SIZE=64)
    m = BlockMask.from_flex(fm)
    assert torch.equal(m.to_dense()[0, 0], torch.ones(4, 4, dtype=torch.bool).tril())


@pytest.mark.parametrize("bad", ["unsorted", "range", "row_ptr", "size", "dtype", "block"])
def test_block_mask_validation(bad):
    rp = torch.tensor([0, 2], dtype=torch.int64)
    ci = torch.tensor([0, 1], dtype=torch.int32)
    kwargs = dict(q_len=16, kv_len=32, block_q=16, block_k=16)
    if bad == "unsorted":
        ci = torch.tensor([1, 0], dtype=torch.int32)
    elif bad == "range":
        ci = torch.tensor([0, 2], dtype=torch.int32)
    elif bad == "row_ptr":
        rp = torch.tensor([0, 3], dtype=torch.int64)
    elif bad == "size":
        rp = torch.tensor([0, 1, 2], dtype=torch.int64)
    elif bad == "dtype":
        ci = ci.long()
    else:
        kwargs["block_k"] = 24
    with pytest.raises(ValueError):
        BlockMask(rp, ci, **kwargs)


def test_raw_op_rejects_corrupted_lists():
    """The raw op is public: lists modified after validation are caught by the kernel."""
    q = k = v = torch.rand(1, 1, 32, 16)
    rp = torch.tensor([0, 2, 4], dtype=torch.int64)
    for ci in ([0, 5, 0, 1], [1, 0, 0, 1], [0, -1, 0, 1]):
        ci = torch.tensor(ci, dtype=torch.int32)
        with pytest.raises(ValueError, match="outside"):
            torch.ops.sparsecore.flash_attention(q, k, v, rp, ci, 16, 16, 1, 1, None, None, True, 0, 0, 0.25, 0.0,
                                                 -math.inf)


def test_topk_estimator_keeps_the_structure(gen):
    q, k = rand(1, 4, 512, 64, gen=gen), rand(1, 2, 512, 64, gen=gen)
    m = topk_blocks(q, k, block=64, keep=0.25)
    dense = m.to_dense()
    assert dense.shape == (1, 2, 8, 8)
    assert dense.diagonal(dim1=2, dim2=3).all() and dense[..., 0].all()  # diagonal and sinks
    assert not dense.triu(1).any()                                        # causal
    n = dense.sum(-1)[0, 0]
    assert 3 <= n[7] <= 5  # ceil(0.25 * 8) = 2 chosen, plus the diagonal, local and sink blocks
    tau = topk_blocks(q, k, tau=0.5, per="q_head")
    assert tau.heads == 4
    vs = vertical_slash_blocks(q, k, vertical=0.05, slash=0.05)
    assert vs.to_dense().diagonal(dim1=2, dim2=3).all()


def test_topk_keeps_what_matters():
    """A key block that every query attends to strongly is selected."""
    torch.manual_seed(0)
    q = torch.randn(1, 1, 1024, 64) * 0.1
    k = torch.randn(1, 1, 1024, 64) * 0.1
    k[:, :, 320:384] += q.mean(2, keepdim=True) * 0 + 3.0 * torch.ones(64) / 8
    q += 3.0 * torch.ones(64) / 8
    m = topk_blocks(q, k, keep=0.1, sink_blocks=0, local_blocks=0)
    assert m.to_dense()[0, 0, 8:, 5].all()


def test_blasst(isa, gen):
    q, k, v = rand(1, 2, 512, 64, gen=gen), rand(1, 1, 512, 64, gen=gen), rand(1, 1, 512, 64, gen=gen)
    k[:, :, :8] = q[:, :1, :8].mean(2, keepdim=True) * 0 + 1.5  # strong sinks make later tiles negligible
    q = q + 1.5
    dense, st0 = flash_attention(q, k, v, return_stats=True)
    assert st0.tiles_skipped == 0
    for lam in (0, None):
        same, st = flash_attention(q, k, v, blasst_lambda=lam, return_stats=True)
        assert torch.equal(same, dense) and st.tiles_skipped == 0
    skipped, st = flash_attention(q, k, v, blasst_lambda=1e-4, return_stats=True)
    assert st.tiles_skipped > 0 and 0 < st.skipped_fraction < 1
    assert (skipped - dense).abs().max() < 1e-2


def test_split_kv_decode_equals_unsplit(gen):
    q, k, v = rand(1, 4, 1, 64, gen=gen), rand(1, 1, 5000, 64, gen=gen), rand(1, 1, 5000, 64, gen=gen)
    with sparsecore.runtime.use_cpu_isa(sparsecore.cpu_isa()):
        sparsecore.set_num_threads(4)
        try:
            split = flash_attention(q, k, v)
        finally:
            sparsecore.set_num_threads(0)
    sparsecore.set_num_threads(1)
    try:
        single = flash_attention(q, k, v)
    finally:
        sparsecore.set_num_threads(0)
    want = reference(q, k, v)[0]
    check(split, want, torch.float32)
    assert (split - single).abs().max() < 1e-5


def test_quest_bound_really_bounds(gen):
    """Property: every score in a page is <= the page's Quest bound."""
    for trial in range(5):
        k = rand(2, 2, 200, 32, gen=gen)
        q = rand(2, 4, 1, 32, gen=gen)
        bounds = PageBounds(16).update(k)
        bound = page_scores(q, bounds)  # [B, Hkv, pages]
        s = torch.einsum("bgd,bhjd->bhgj", q[:, :, 0], k)  # [B, Hkv, Hq, L]
        s = s.view(2, 2, 4, 200)
        per_key = s.amax(2)                              # max over heads of the scores
        pad = 13 * 16 - 200
        per_page = F.pad(per_key, (0, pad), value=-math.inf).view(2, 2, 13, 16).amax(-1)
        assert (per_page <= bound + 1e-4).all()


def quest_reference(q, kmin, kmax):
    """float64 Quest bound: max over the group's rows of sum_d max(q kmin, q kmax)."""
    B, hq, lq, d = q.shape
    hkv = kmin.shape[1]
    qg = q.double().reshape(B, hkv, hq // hkv * lq, 1, d)
    lo, hi = kmin.double()[:, :, None], kmax.double()[:, :, None]  # [B, Hkv, 1, pages, D]
    return torch.maximum(qg * lo, qg * hi).sum(-1).amax(2)


@pytest.mark.parametrize("qdtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("bdtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("hq,hkv,lq,d,pages", [(4, 4, 1, 64, 7), (9, 3, 1, 20, 300), (8, 1, 3, 128, 513),
                                              (6, 2, 2, 72, 1)])
def test_quest_scores_native_against_float64(qdtype, bdtype, hq, hkv, lq, d, pages, isa, gen):
    """The native scoring kernel on every ISA path: any q/bounds dtypes, GQA 1/3/8, Lq > 1,
    head dims with a tail, page counts past one task (256 pages), strided q."""
    q = rand(2, lq, hq, d, dtype=qdtype, gen=gen).transpose(1, 2)  # HF's [B, L, H, D] memory layout
    lo = rand(2, hkv, pages, d, gen=gen)
    kmin, kmax = lo.to(bdtype), (lo + rand(2, hkv, pages, d, gen=gen).abs()).to(bdtype)
    got = torch.ops.sparsecore.quest_page_scores(q, kmin, kmax)
    want = quest_reference(q, kmin, kmax)
    assert got.dtype == torch.float32 and got.shape == (2, hkv, pages)
    # fp32 sums of d products of inputs of at most 2^-7 relative error each: rounding only.
    assert torch.allclose(got.double(), want, rtol=1e-5, atol=1e-4 * d ** 0.5)


def test_quest_scores_opcheck_and_bad_input(gen):
    q, lo = rand(1, 6, 2, 32, gen=gen), rand(1, 3, 5, 32, gen=gen)
    torch.library.opcheck(torch.ops.sparsecore.quest_page_scores, (q, lo, lo + 1))
    with pytest.raises(ValueError, match="multiple of 4 KV heads"):
        torch.ops.sparsecore.quest_page_scores(q, rand(1, 4, 5, 32, gen=gen), rand(1, 4, 5, 32, gen=gen))
    with pytest.raises(ValueError, match="kmin and kmax must match"):
        torch.ops.sparsecore.quest_page_scores(q, lo, rand(1, 3, 6, 32, gen=gen))
    with pytest.raises(ValueError, match="do not match q"):
        torch.ops.sparsecore.quest_page_scores(q, rand(1, 3, 5, 16, gen=gen), rand(1, 3, 5, 16, gen=gen))
    with pytest.raises(TypeError, match="int64"):
        torch.ops.sparsecore.quest_page_scores(q, lo.long(), lo.long())
    with pytest.raises(ValueError, match="4-D"):
        torch.ops.sparsecore.quest_page_scores(q[0], lo, lo)
    empty = torch.ops.sparsecore.quest_page_scores(q[:, :, :0], lo, lo)  # no q row bounds nothing
    assert (empty == -math.inf).all()


def test_quest_bounds_keep_the_cache_dtype_and_grow_in_place(gen):
    """bf16 keys give bf16 bounds (exact: min and max of bf16 values); appending one token
    writes one page and keeps the storage until it must double."""
    k = rand(1, 2, 40, 16, dtype=torch.bfloat16, gen=gen)
    b = PageBounds(16).update(k[:, :, :33])
    assert b.kmin.dtype == torch.bfloat16 and b.pages == 3
    storage = b._min
    b.update(k[:, :, :40])
    assert b._min is storage and torch.equal(b.kmax[:, :, 2], k[:, :, 32:40].amax(2))
    long = rand(1, 2, 16 * 65, 16, dtype=torch.bfloat16, gen=gen)
    b.update(torch.cat([k, long[:, :, 40:]], 2))
    assert b._min.shape[2] == 128 and torch.equal(b.kmin[:, :, :2], k[:, :, :32].reshape(1, 2, 2, 16, 16).amin(3))


def test_quest_bounds_incremental_equals_full(gen):
    k = rand(1, 2, 100, 16, gen=gen)
    inc = PageBounds(16)
    for n in (10, 16, 17, 40, 100):
        inc.update(k[:, :, :n])
    full = PageBounds(16).update(k)
    assert torch.equal(inc.kmin, full.kmin) and torch.equal(inc.kmax, full.kmax)


def test_quest_mask_and_decode(gen):
    k, v = rand(1, 2, 1000, 64, gen=gen), rand(1, 2, 1000, 64, gen=gen)
    q = rand(1, 6, 1, 64, gen=gen)
    mask = quest_block_mask(q, k, PageBounds(16).update(k), budget=128)
    dense = mask.to_dense()
    assert dense.shape == (1, 2, 1, 63) and dense[..., 0].all() and dense[..., -1].all()
    assert (dense.sum(-1) == 8).all()
    got = flash_attention(q, k, v, block_mask=mask)
    check(got, reference(q, k, v, block_mask=mask)[0], torch.float32)
    assert quest_block_mask(q, k, PageBounds(16).update(k), budget=4096) is None


def test_opcheck(gen):
    q, k, v = rand(1, 4, 40, 64, gen=gen), rand(1, 2, 70, 64, gen=gen), rand(1, 2, 70, 64, gen=gen)
    m = BlockMask.causal(40, 70, block_q=16, block_k=32)
    torch.library.opcheck(torch.ops.sparsecore.flash_attention,
                          (q, k, v, None, None, 0, 0, 1, 1, None, None, True, 0, 0, 0.125, 0.0, -math.inf))
    torch.library.opcheck(torch.ops.sparsecore.flash_attention,
                          (q, k, v, m.row_ptr, m.col_idx, 16, 32, 1, 1, torch.tensor([3]), torch.tensor([70]), True,
                           20, 2, 0.125, 0.0, -5.0))


def test_torch_compile(gen):
    q, k, v = rand(1, 4, 40, 64, gen=gen), rand(1, 2, 40, 64, gen=gen), rand(1, 2, 40, 64, gen=gen)

    def f(q, k, v):
        return flash_attention(q * 2, k, v, window=16).sum(-1)

    compiled = torch.compile(f, fullgraph=True)
    assert torch.allclose(compiled(q, k, v), f(q, k, v), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", ["shape", "dtype", "kv_dtype", "heads", "dim", "causal_len", "window", "sinks",
                                  "window_noncausal", "mask_size", "mask_type", "kv_start", "lambda",
                                  "softcap", "not_tensor"])
def test_bad_input(case):
    q, k, v = torch.rand(1, 4, 8, 16), torch.rand(1, 2, 8, 16), torch.rand(1, 2, 8, 16)
    kwargs = {}
    err = ValueError
    if case == "shape":
        q = q[0]
    elif case == "dtype":
        q, err = q.double(), TypeError
    elif case == "kv_dtype":
        v, err = v.half(), TypeError
    elif case == "heads":
        q = torch.rand(1, 3, 8, 16)
    elif case == "dim":
        q, k, v = (torch.rand(1, 2, 8, 600) for _ in range(3))
    elif case == "causal_len":
        q = torch.rand(1, 4, 9, 16)
    elif case == "window":
        kwargs["window"] = -1
    elif case == "sinks":
        kwargs.update(window=4, sinks=-2)
    elif case == "window_noncausal":
        kwargs.update(window=4, causal=False)
    elif case == "mask_size":
        kwargs["block_mask"] = BlockMask.causal(16, 16, block_q=16, block_k=16)
    elif case == "mask_type":
        kwargs["block_mask"], err = torch.ones(1, 1, dtype=torch.bool), TypeError
    elif case == "kv_start":
        kwargs.update(kv_start=[5], kv_end=[3])
    elif case == "lambda":
        kwargs["blasst_lambda"] = 2.0
    elif case == "softcap":
        kwargs["softcap"] = float("nan")
    else:
        q, err = q.tolist(), TypeError
    with pytest.raises(err):
        flash_attention(q, k, v, **kwargs)


def test_configs_validate():
    for bad in (lambda: StaticAttentionConfig(window=0), lambda: TopKAttentionConfig(keep=0),
                lambda: TopKAttentionConfig(estimator="x"), lambda: BLASSTConfig(a=-1), lambda: QuestConfig(page_size=8),
                lambda: QuestConfig(budget=0), lambda: QuestConfig(budget=True)):
        with pytest.raises(ValueError):
            bad()


# ----------------------------------------------------------------------------- HF models
transformers = pytest.importorskip("transformers")


def tiny_llama(seed=0, layers=2):
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(vocab_size=96, hidden_size=192, intermediate_size=128, num_hidden_layers=layers,
                                   num_attention_heads=6, num_key_value_heads=2, head_dim=64,
                                   max_position_embeddings=4096, attn_implementation="sdpa")
    return transformers.LlamaForCausalLM(cfg).eval()


def test_hf_dense_equals_sdpa_with_padding():
    model = tiny_llama()
    ours = sparsify_attention_(copy.deepcopy(model))
    ids = torch.randint(0, 96, (2, 150))
    for pad in (None, "left", "right"):
        am = torch.ones(2, 150, dtype=torch.long)
        if pad == "left":
            am[1, :20] = 0
        elif pad == "right":
            am[1, 130:] = 0
        with torch.no_grad():
            ref = model(ids, attention_mask=am).logits
            got = ours(ids, attention_mask=am).logits
        real = am.bool()
        assert (ref - got)[real].abs().max() < 1e-4, pad


def test_hf_generate_dense_and_quest():
    model = tiny_llama()
    ids = torch.randint(0, 96, (1, 300))
    ref = model.generate(ids, max_new_tokens=8, do_sample=False)
    dense = sparsify_attention_(copy.deepcopy(model))
    assert torch.equal(dense.generate(ids, max_new_tokens=8, do_sample=False), ref)
    # Quest with a budget covering every page is dense decode.
    full = sparsify_attention_(copy.deepcopy(model), QuestConfig(budget=4096, dense_layers=0))
    assert torch.equal(full.generate(ids, max_new_tokens=8, do_sample=False, past_key_values=QuestCache()), ref)
    quest = sparsify_attention_(copy.deepcopy(model), QuestConfig(budget=64, dense_layers=1))
    out = quest.generate(ids, max_new_tokens=8, do_sample=False, past_key_values=QuestCache())
    assert out.shape == ref.shape


def test_hf_recipes_compose_and_round_trip(tmp_path):
    model = tiny_llama()
    ids = torch.randint(0, 96, (1, 200))
    sp = sparsify_attention_(copy.deepcopy(model), StaticAttentionConfig(window=64, sinks=4), BLASSTConfig(a=0.5),
                             layers=[1])
    stats = []
    for m in sp.modules():
        if getattr(m, "layer_idx", None) is not None and hasattr(m, "q_proj"):
            m.sparsecore_stats = stats
    with torch.no_grad():
        got = sp(ids).logits
    assert len(stats) == 2 and stats[1].tiles_computed < stats[0].tiles_computed
    from sparsecore.attention import apply_recipe
    recipe = sp.config.sparsecore_attention
    again = apply_recipe(copy.deepcopy(model), recipe)
    with torch.no_grad():
        assert torch.equal(again(ids).logits, got)
    sp.config.save_pretrained(tmp_path)
    loaded = transformers.AutoConfig.from_pretrained(tmp_path)
    assert loaded.sparsecore_attention == recipe


def test_hf_topk_prefill_close_to_dense():
    model = tiny_llama()
    ids = torch.randint(0, 96, (1, 512))
    with torch.no_grad():
        ref = model(ids).logits
        sp = sparsify_attention_(copy.deepcopy(model), TopKAttentionConfig(keep=1.0, min_len=64))
        assert (sp(ids).logits - ref).abs().max() < 1e-4  # keeping every block is dense
        sp = sparsify_attention_(copy.deepcopy(model), TopKAttentionConfig(keep=0.3, min_len=64,
                                                                             estimator="vertical_slash"))
        assert torch.isfinite(sp(ids).logits).all()


def test_hf_bad_usage():
    model = tiny_llama()
    with pytest.raises(TypeError):
        sparsify_attention_(copy.deepcopy(model), "window")
    with pytest.raises(ValueError):
        sparsify_attention_(copy.deepcopy(model), BLASSTConfig(), BLASSTConfig())
    with pytest.raises(ValueError):
        sparsify_attention_(copy.deepcopy(model), layers=[7])
    sp = sparsify_attention_(copy.deepcopy(model))
    ids = torch.randint(0, 96, (1, 20))
    am = torch.ones(1, 20, dtype=torch.long)
    am[0, 5] = 0  # a hole in the middle: not left/right padding
    with pytest.raises(ValueError, match="padding"), torch.no_grad():
        sp(ids, attention_mask=am)


def test_cli_spec_parser():
    from sparsecore.attention.configs import parse_spec
    assert parse_spec("dense") == ()
    assert parse_spec("window:1024:4+blasst:1") == (StaticAttentionConfig(1024, 4), BLASSTConfig(1.0))
    assert parse_spec("quest:0.125") == (QuestConfig(budget=0.125),)
    assert parse_spec("quest:512:32") == (QuestConfig(page_size=32, budget=512),)
    assert parse_spec("vslash:0.05")[0].estimator == "vertical_slash"
    for bad in ("", "window", "window:x", "topk:2", "blasst:nan", "foo:1", "window:10.5", "quest:0.1:17",
                "quest:0.1:16.5"):
        with pytest.raises(ValueError):
            parse_spec(bad)


def test_sparsify_accepts_attention_configs_and_saved_recipes_come_back(tmp_path):
    model = tiny_llama()
    ids = torch.randint(0, 96, (1, 100))
    out = sparsecore.sparsify_(copy.deepcopy(model), StaticAttentionConfig(window=32, sinks=2))
    with torch.no_grad():
        want = out(ids).logits
    both = sparsecore.sparsify_(copy.deepcopy(model), (StaticAttentionConfig(window=32, sinks=2), BLASSTConfig(0)))
    with torch.no_grad():
        assert torch.equal(both(ids).logits, want)
    with pytest.raises(TypeError):
        sparsecore.sparsify_(copy.deepcopy(model), ("window",))
    # A saved config carries the recipe; loading re-applies it.
    out.save_pretrained(tmp_path)
    loaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    from sparsecore.models.pruned_dir import _apply_attention_recipe
    _apply_attention_recipe(loaded)
    with torch.no_grad():
        assert torch.allclose(loaded(ids).logits, want, atol=1e-5)


def test_eval_cli_rejects_bad_attention_spec():
    from sparsecore.cli import main
    with pytest.raises(SystemExit, match="attention"):
        main(["eval", "--attention", "window:-3", "--no-speed"])


@pytest.mark.parametrize("family", ["Gemma2", "Gemma3"])
def test_hf_gemma_sliding_layers_and_softcap_match_eager(family):
    """Gemma-2 (logit soft-cap + sliding layers) and Gemma-3 (per-layer sliding/global) keep their layouts."""
    C = getattr(transformers, f"{family}TextConfig", None) or getattr(transformers, f"{family}Config")
    kw = dict(vocab_size=96, hidden_size=128, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
              num_key_value_heads=2, head_dim=64, sliding_window=48, max_position_embeddings=1024)
    if family == "Gemma3":
        kw["layer_types"] = ["sliding_attention"] * 3 + ["full_attention"]
    cfg = C(**kw)
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    model = getattr(transformers, f"{family}ForCausalLM")(cfg).eval()
    ids = torch.randint(0, 96, (1, 150))
    ours = sparsify_attention_(copy.deepcopy(model))
    with torch.no_grad():
        assert (model(ids).logits - ours(ids).logits).abs().max() < 1e-4
    assert torch.equal(model.generate(ids[:, :60], max_new_tokens=6, do_sample=False),
                       ours.generate(ids[:, :60], max_new_tokens=6, do_sample=False))


def test_streaming_cache_is_bounded_and_exact():
    model = tiny_llama()
    cfg = StaticAttentionConfig(window=40, sinks=4)
    sp = sparsify_attention_(copy.deepcopy(model), cfg)
    ids = torch.randint(0, 96, (1, 100))
    unbounded = sp.generate(ids, max_new_tokens=30, do_sample=False)
    cache = cfg.make_cache()
    bounded = sp.generate(ids, max_new_tokens=30, do_sample=False, past_key_values=cache)
    assert torch.equal(bounded, unbounded)
    assert cache.layers[0].keys.shape[2] == 4 + 40 - 1 and cache.get_seq_length() == 129
    with pytest.raises(ValueError, match="window"):
        sparsecore.attention.StreamingCache(0)
    am = torch.ones(1, 100, dtype=torch.long)
    am[0, :3] = 0
    with pytest.raises(ValueError, match="padding"):
        sp.generate(ids, attention_mask=am, max_new_tokens=2, do_sample=False, past_key_values=cfg.make_cache())


def test_calibrate_blasst_picks_the_largest_safe_a():
    from sparsecore.attention import calibrate_blasst
    model = tiny_llama()
    docs = [torch.randint(0, 96, (300,)) for _ in range(2)]
    tol = 1e-4
    config, rows = calibrate_blasst(model, docs, max_ppl_increase=tol, candidates=(1e6, 0.01, 300.0))
    assert rows[0]["a"] == 0 and rows[0]["skipped"] == 0
    assert [r["a"] for r in rows[1:]] == sorted(r["a"] for r in rows[1:])
    dense = rows[0]["ppl"]
    ok = [r["a"] for r in rows[1:] if r["ppl"] <= dense * (1 + tol)]
    # The choice is the last candidate within the limit before the first one over it.
    first_bad = next((r["a"] for r in rows[1:] if r["ppl"] > dense * (1 + tol)), None)
    expected = max([a for a in ok if first_bad is None or a < first_bad], default=0.0)
    assert config.a == expected
    assert any(getattr(m, "sparsecore_attention", ()) == (config,) for m in model.modules())
    with pytest.raises(ValueError):
        calibrate_blasst(model, [torch.ones(1, dtype=torch.long)])


def test_attention_composes_with_weight_and_activation_sparsity():
    model = tiny_llama()
    ids = torch.randint(0, 96, (1, 120))
    pruned = copy.deepcopy(model)
    sparsecore.sparsify_(pruned, sparsecore.MagnitudeConfig(sparsity=0.5))
    with torch.no_grad():
        want = pruned(ids).logits
    both = sparsify_attention_(copy.deepcopy(pruned))
    with torch.no_grad():
        assert (both(ids).logits - want).abs().max() < 1e-4  # dense-equivalent attention on the pruned model
    sparsecore.sparsify_(both, sparsecore.TEALConfig(sparsity=0.3, calibration=[{"input_ids": ids}]))
    sparsify_attention_(both, StaticAttentionConfig(window=64, sinks=4))
    with torch.no_grad():
        assert torch.isfinite(both(ids).logits).all()
    assert torch.equal(both.generate(ids[:, :40], max_new_tokens=4, do_sample=False)[:, :40], ids[:, :40])

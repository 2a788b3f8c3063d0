"""Sparse flash attention on CUDA tensor cores against a float64 reference: within 2x the
error of torch's own SDPA in the same dtype (FlashAttention's test rule), every position rule,
block masks, BLASST, split-KV decode, the NaN rule, torch.library; skipped without a GPU."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sparsecore.attention import BlockMask, PageBounds, flash_attention, quest_block_mask, topk_blocks
from conftest import requires_cuda
from test_attention import rand, reference

pytestmark = [pytest.mark.cuda, requires_cuda]


@pytest.fixture(autouse=True)
def cuda_attention_opt_in(monkeypatch):
    monkeypatch.setenv("SPARSECORE_CUDA_ATTENTION", "1")


def check_cuda(q, k, v, **kw):
    """Runs the CUDA kernel and SDPA (same dtype, boolean mask) and compares both with float64."""
    want, want_lse, vis = reference(q.cpu(), k.cpu(), v.cpu(), return_visible=True, **kw)
    got, lse = flash_attention(q, k, v, return_lse=True, **kw)
    assert got.dtype == q.dtype and got.device == q.device
    hq, hkv = q.shape[1], k.shape[1]
    seen = vis.any(-1)  # rows that see a key (SDPA gives NaN for the others)
    torch_out = F.scaled_dot_product_attention(q, k.repeat_interleave(hq // hkv, 1), v.repeat_interleave(hq // hkv, 1),
                                               attn_mask=vis.to(q.device), scale=kw.get("scale"))
    err = (got.cpu().double() - want)[seen].abs().max().item() if seen.any() else 0.0
    err_torch = (torch_out.cpu().double() - want)[seen].abs().max().item() if seen.any() else 0.0
    assert err <= 2 * err_torch + 1e-3, f"error {err} vs torch's {err_torch}"
    assert (got.cpu()[~seen] == 0).all() and (lse.cpu()[~seen] == -math.inf).all()
    assert torch.allclose(lse.cpu().double()[seen], want_lse[seen], atol=2e-2, rtol=1e-3)
    return got


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("d", [64, 128, 256])
@pytest.mark.parametrize("hq,hkv,lq,lk", [(4, 4, 1, 1000), (9, 3, 7, 70), (8, 1, 65, 65), (6, 2, 200, 333)])
def test_cuda_dense_causal(dtype, d, hq, hkv, lq, lk, gen):
    q, k, v = (rand(2, h, n, d, dtype=dtype, gen=gen).cuda() for h, n in ((hq, lq), (hkv, lk), (hkv, lk)))
    check_cuda(q, k, v)


@pytest.mark.parametrize("kw", [dict(causal=False), dict(window=50, sinks=4), dict(window=17),
                                dict(softcap=5.0, scale=0.3), dict(kv_start=[3, 0], kv_end=[300, 250])])
def test_cuda_position_rules(kw, gen):
    q, k, v = rand(2, 8, 130, 128, dtype=torch.bfloat16, gen=gen), rand(2, 2, 300, 128, dtype=torch.bfloat16, gen=gen), \
        rand(2, 2, 300, 128, dtype=torch.bfloat16, gen=gen)
    if kw.get("causal") is False:
        q = q[:, :, :100]
    check_cuda(q.cuda(), k.cuda(), v.cuda(), **kw)


def test_cuda_hf_strided_layout(gen):
    """HF hands q/k/v as [B, L, H, D] memory viewed as [B, H, L, D]: no copy needed."""
    q = rand(1, 90, 8, 64, dtype=torch.float16, gen=gen).cuda().transpose(1, 2)
    k = rand(1, 90, 2, 64, dtype=torch.float16, gen=gen).cuda().transpose(1, 2)
    v = rand(1, 90, 2, 64, dtype=torch.float16, gen=gen).cuda().transpose(1, 2)
    check_cuda(q, k, v)


@pytest.mark.parametrize("per", ["shared", "kv", "q"])
def test_cuda_block_masks(per, gen):
    hq, hkv, lq, lk = 8, 2, 256, 512
    q, k, v = (rand(1, h, n, 128, dtype=torch.bfloat16, gen=gen) for h, n in ((hq, lq), (hkv, lk), (hkv, lk)))
    heads = {"shared": 1, "kv": hkv, "q": hq}[per]
    dense = torch.rand(1, heads, lq // 64, lk // 32, generator=gen) < 0.4
    mask = BlockMask.from_dense(dense, q_len=lq, kv_len=lk, block_q=64, block_k=32)
    check_cuda(q.cuda(), k.cuda(), v.cuda(), block_mask=mask)
    # Quest pages (16 keys) and the top-k estimator's mask run as on the CPU.
    sel = topk_blocks(q, k, keep=0.3)
    check_cuda(q.cuda(), k.cuda(), v.cuda(), block_mask=sel)


def test_cuda_quest_decode(gen):
    q, k, v = rand(1, 8, 1, 128, dtype=torch.bfloat16, gen=gen), rand(1, 2, 3000, 128, dtype=torch.bfloat16, gen=gen), \
        rand(1, 2, 3000, 128, dtype=torch.bfloat16, gen=gen)
    mask = quest_block_mask(q, k, PageBounds(16).update(k), budget=400)
    check_cuda(q.cuda(), k.cuda(), v.cuda(), block_mask=mask)


def test_cuda_split_kv_decode_matches_cpu(gen):
    """Long KV, one query: split over blocks and merged; the CPU kernel gives the same rows."""
    q, k, v = rand(1, 32, 1, 128, dtype=torch.bfloat16, gen=gen), rand(1, 8, 20000, 128, dtype=torch.bfloat16, gen=gen), \
        rand(1, 8, 20000, 128, dtype=torch.bfloat16, gen=gen)
    got = check_cuda(q.cuda(), k.cuda(), v.cuda())
    cpu = flash_attention(q, k, v)
    assert (got.cpu().float() - cpu.float()).abs().max() < 2e-2


def test_cuda_blasst(gen):
    q, k, v = (rand(1, 4, 512, 64, dtype=torch.float16, gen=gen, scale=s).cuda() for s in (3.0, 3.0, 1.0))
    base = flash_attention(q, k, v)
    same, stats0 = flash_attention(q, k, v, blasst_lambda=0, return_stats=True)
    assert torch.equal(base, same) and stats0.tiles_skipped == 0 and stats0.tiles_computed > 0
    out, stats = flash_attention(q, k, v, blasst_lambda=1e-4, return_stats=True)
    assert stats.tiles_skipped > 0
    assert (out.float() - base.float()).abs().max() < 5e-2


def test_cuda_nan_rule(gen):
    q, k, v = (rand(1, 2, 80, 64, dtype=torch.bfloat16, gen=gen) for _ in range(3))
    q[0, 0, 5, 3] = float("nan")
    k[0, 1, 40, 0] = float("inf")   # rows at positions >= 40 of head 1 see it
    v[0, 0, 70, 9] = float("nan")   # rows at positions >= 70 of head 0 see it
    out, lse = flash_attention(q.cuda(), k.cuda(), v.cuda(), return_lse=True)
    out, lse = out.cpu(), lse.cpu()
    assert torch.isnan(out[0, 0, 5]).all() and torch.isnan(lse[0, 0, 5])
    assert torch.isnan(out[0, 1, 40:]).all() and torch.isfinite(out[0, 1, :40]).all()
    assert torch.isnan(out[0, 0, 70:]).all()
    assert torch.isfinite(out[0, 0, [i for i in range(70) if i != 5]]).all()


def test_cuda_bad_input_and_opcheck(gen):
    q, k, v = (rand(1, 2, 16, 64, dtype=torch.bfloat16, gen=gen).cuda() for _ in range(3))
    with pytest.raises(TypeError, match="bfloat16 or float16"):
        flash_attention(q.float(), k.float(), v.float())
    with pytest.raises(ValueError, match="head dim 96"):
        x = rand(1, 2, 16, 96, dtype=torch.bfloat16, gen=gen).cuda()
        flash_attention(x, x, x)
    with pytest.raises(ValueError, match="on cpu"):
        flash_attention(q, k.cpu(), v)
    with pytest.raises(ValueError, match="KV range"):
        flash_attention(q, k, v, kv_start=[5], kv_end=[3])
    torch.library.opcheck(torch.ops.sparsecore.flash_attention,
                          (q, k, v, None, None, 0, 0, 1, 1, None, None, True, 0, 0, 0.125, 0.0, -math.inf))

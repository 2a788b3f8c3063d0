"""python -m sparsecore.selftest: every compiled kernel against an independent float64 reference.

Runs the CPU kernels (CSR, BSR, N:M, activation-sparse, flash attention) on every ISA path this CPU can
execute and, when a GPU is visible, the CUDA kernels; prints a pass/fail table and exits non-zero on any failure. With
``--bench`` it also times the GPU kernels against dense torch (cuBLAS) on the GPU.
"""

from __future__ import annotations

import sys
import time

import torch

from . import BSR, CSR, NM, info, sparse_linear, spmm, use_cpu_isa
from .formats.nm import select_nm_mask

_VALUE_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _random_sparse(rows: int, cols: int, density: float, gen: torch.Generator) -> torch.Tensor:
    # Small integers / 8: fp32 accumulation is exact, so fp32 results must match bit for bit.
    vals = torch.randint(-8, 9, (rows, cols), generator=gen).float() / 8
    keep = torch.rand(rows, cols, generator=gen) < density
    return torch.where(keep, vals, torch.zeros(()))


def _reference(w: torch.Tensor, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    y = x.double() @ w.double().T
    return y + bias.double() if bias is not None else y


def _max_error(got: torch.Tensor, want: torch.Tensor) -> float:
    # Compare after rounding the reference once to the output dtype: exact inputs make that exact.
    return float((got.double() - want.to(got.dtype).double()).abs().max()) if got.numel() else 0.0


def _cases(device: str):
    gen = torch.Generator().manual_seed(0)
    # (40, 1100, 70): several cache panels of B and two 64-column tiles.
    shapes = [(7, 96, 1), (33, 333, 5), (64, 128, 64), (130, 257, 17), (40, 1100, 70)]
    for rows, cols, n in shapes:
        w = _random_sparse(rows, cols, 0.3, gen)
        x = (torch.randint(-8, 9, (n, cols), generator=gen).float() / 4)
        bias = torch.randint(-4, 5, (rows,), generator=gen).float()
        for vdtype in _VALUE_DTYPES:
            for xdtype in _VALUE_DTYPES:
                # On CPU both GEMV plans: column indices and the bitmap.
                for bitmap in ((False, True) if device == "cpu" else (False,)):
                    yield (f"csr{'+bitmap' if bitmap else ''} {rows}x{cols} n={n}", vdtype, xdtype,
                           CSR.from_dense(w.to(device), dtype=vdtype, bitmap=bitmap), w, x, bias)
                if device == "cpu":
                    wb = torch.nn.functional.pad(w, (0, (-cols) % 4, 0, (-rows) % 4))
                    xb = torch.nn.functional.pad(x, (0, (-cols) % 4))
                    bb = torch.nn.functional.pad(bias, (0, (-rows) % 4))
                    yield (f"bsr4x4 {wb.shape[0]}x{wb.shape[1]} n={n}", vdtype, xdtype,
                           BSR.from_dense(wb, (4, 4), dtype=vdtype), wb, xb, bb)
    # N:M. On a GPU, 2:4 bf16/fp16 weights on 16 x 32 tiles with activations of the same
    # dtype run on sparse tensor cores (mma.sp); the other cases check the dense fallback.
    # More than 16 columns with k a multiple of 64 take the tiled (cp.async) kernel:
    # (80, 320, 40) and (144, 192, 130) with partial row and column blocks.
    for rows, cols, n in [(64, 32, 1), (64, 128, 64), (128, 96, 7), (48, 96, 7), (130, 264, 17), (40, 1104, 70),
                          (80, 320, 40), (144, 192, 130)]:
        w = torch.randint(-8, 9, (rows, cols), generator=gen).float() / 8
        x = (torch.randint(-8, 9, (n, cols), generator=gen).float() / 4)
        bias = torch.randint(-4, 5, (rows,), generator=gen).float()
        for nm in ((2, 4), (4, 8)) if device == "cpu" else ((2, 4),):
            wn = w * select_nm_mask(torch.rand(rows, cols, generator=gen), *nm)
            for vdtype in _VALUE_DTYPES:
                for xdtype in _VALUE_DTYPES:
                    a = NM.from_dense(wn, *nm, dtype=vdtype).to(device)
                    core = " tensor-cores" if a.tensor_cores and vdtype == xdtype else ""
                    yield (f"nm{nm[0]}:{nm[1]}{core} {rows}x{cols} n={n}", vdtype, xdtype, a, wn, x, bias)


def _act_cases(device: str):
    """Activation-sparse linear: (name, run() -> result on CPU, float64 reference)."""
    from .activation import act_sparse_linear, pack_weight, pack_weight_sparse, reference_act_linear

    gen = torch.Generator().manual_seed(3)
    for out_f, in_f, n in [(7, 96, 1), (33, 333, 5), (130, 257, 17), (2100, 40, 2), (64, 1100, 3)]:
        w = torch.randint(-8, 9, (out_f, in_f), generator=gen).float() / 8
        w[torch.rand(out_f, in_f, generator=gen) < 0.4] = 0
        x = torch.randint(-8, 9, (n, in_f), generator=gen).float() / 4  # |x| in steps of 0.25
        scale = torch.randint(1, 4, (in_f,), generator=gen).float()
        bias = torch.randint(-4, 5, (out_f,), generator=gen).float()
        for dtype in _VALUE_DTYPES:
            packed = pack_weight(w.to(dtype)).to(device)
            runs = pack_weight_sparse(w.to(dtype)) if device == "cpu" else None
            xd, bd, sd = x.to(device, dtype), bias.to(device, dtype), scale.to(device)
            for t, sc, comp in [(0.3, None, False), (0.6, sd, False), (0.3, None, True)]:
                want = reference_act_linear(x.to(dtype), w.to(dtype), t, scale=None if sc is None else scale,
                                            bias=bias.to(dtype), complement=comp)
                yield (f"act {out_f}x{in_f} n={n} {str(dtype)[6:]} t={t}{' wina' if sc is not None else ''}"
                       f"{' complement' if comp else ''}",
                       lambda t=t, sc=sc, comp=comp: act_sparse_linear(xd, packed, out_f, t, scale=sc, bias=bd,
                                                                      complement=comp).cpu(), want)
                if runs is not None:
                    yield (f"act+weight-sparse {out_f}x{in_f} n={n} {str(dtype)[6:]} t={t}",
                           lambda t=t, sc=sc, comp=comp: act_sparse_linear(
                               xd, runs[0], out_f, t, scale=sc, bias=bd, complement=comp, sparse_runs=runs[1:],
                               in_features=in_f), want)


def _robustness_cases(device: str):
    """(name, check() -> True when it holds): the NaN rule, corrupted contents, large row
    counts, on this device. On a GPU these are the checks no CPU test can make."""
    from .activation import act_sparse_linear, pack_weight

    gen = torch.Generator().manual_seed(7)
    w = _random_sparse(64, 128, 0.5, gen)
    nm = w * select_nm_mask(torch.rand(64, 128, generator=gen), 2, 4)
    for name, a in [("csr", CSR.from_dense(w.to(device))), ("nm2:4 tensor-cores",
                                                            NM.from_dense(nm, dtype=torch.bfloat16).to(device)),
                    ("nm2:4 fallback", NM.from_dense(nm).to(device))]:
        dtype = a.dtype

        def nan_rule(a=a, dtype=dtype):
            x = torch.ones(20, 128, dtype=dtype, device=device)
            x[3, 7] = float("inf")
            x[11, 0] = float("nan")
            y = sparse_linear(x, a).float().cpu()
            clean = [i for i in range(20) if i not in (3, 11)]
            return bool(torch.isnan(y[[3, 11]]).all() and torch.isfinite(y[clean]).all())

        yield f"nan rule {name} {device}", nan_rule
    a = CSR.from_dense(w.to(device))

    def corrupted_index():
        # Out-of-range indices must never be read: an error (CPU) or the product without
        # them (CUDA, where checking would cost a synchronisation), and no crash.
        col = a.col_idx.clone()
        col[5] = 30000
        try:
            y = torch.ops.sparsecore.csr_mm(a.row_ptr, col, a.values, a.row_chunks, a.bitmap, 128,
                                            torch.ones(3, 128, device=device), None, True)
        except ValueError:
            return True
        if device == "cuda":
            torch.cuda.synchronize()
        return bool(torch.isfinite(y).all())

    yield f"corrupted index {device}", corrupted_index

    def many_rows():
        # More rows than one CUDA grid dimension holds (65535).
        wa = torch.randint(-2, 3, (32, 64), generator=gen).float()
        x = torch.randint(-2, 3, (70000, 64), generator=gen).float()
        got = act_sparse_linear(x.to(device), pack_weight(wa.to(device)), 32, 0.5).cpu()
        want = ((x * (x.abs() > 0.5)) @ wa.T)
        return bool(torch.equal(got, want))

    yield f"act 70000 rows {device}", many_rows


def _cuda_attention_cases():
    """The tensor-core kernel: bit-exact where the math allows (q = 0 makes every probability
    exactly 1, so rows seeing a power of two of keys average small-integer V rows exactly),
    and on random data within 2x the error of torch's SDPA in the same dtype, per dtype and
    head dim, prefill and split-KV decode."""
    import math

    import torch.nn.functional as F

    from .attention import BlockMask, flash_attention

    gen = torch.Generator().manual_seed(12)
    for dtype in (torch.bfloat16, torch.float16):
        for d in (64, 128, 256):
            v = torch.randint(-8, 9, (1, 2, 256, d), generator=gen).to(dtype)
            q, k = torch.zeros(1, 4, 64, d, dtype=dtype), torch.randn(1, 2, 256, d, generator=gen).to(dtype)
            mask = BlockMask.from_dense(torch.tensor([[True, False, False, True]]), q_len=64, kv_len=256)

            def exact(q=q, k=k, v=v, dtype=dtype, mask=mask):
                full = flash_attention(q.cuda(), k.cuda(), v.cuda(), causal=False).cpu()
                want = v.double().mean(2, keepdim=True).repeat_interleave(2, 1).expand_as(full).to(dtype)
                sparse = flash_attention(q.cuda(), k.cuda(), v.cuda(), causal=False, block_mask=mask).cpu()
                want_sparse = torch.cat([v[:, :, :64], v[:, :, 192:]], 2).double().mean(2, keepdim=True)
                return bool(torch.equal(full, want) and torch.equal(
                    sparse, want_sparse.repeat_interleave(2, 1).expand_as(sparse).to(dtype)))

            yield f"attention cuda exact (q = 0, small-integer v) d={d} {str(dtype)[6:]}", exact
            for hq, hkv, lq, lk in ((8, 2, 300, 300), (32, 8, 1, 5000)):
                qr = torch.randn(1, hq, lq, d, generator=gen).to(dtype)
                kr, vr = (torch.randn(1, hkv, lk, d, generator=gen).to(dtype) for _ in range(2))

                def vs_sdpa(q=qr, k=kr, v=vr, hq=hq, hkv=hkv, lq=lq, lk=lk, d=d):
                    kd, vd = k.repeat_interleave(hq // hkv, 1), v.repeat_interleave(hq // hkv, 1)
                    vis = torch.arange(lk)[None, :] <= torch.arange(lq)[:, None] + lk - lq
                    s = (q.double() @ kd.double().transpose(-1, -2)) / math.sqrt(d)
                    want = torch.softmax(s.masked_fill(~vis, -math.inf), -1) @ vd.double()
                    got = flash_attention(q.cuda(), k.cuda(), v.cuda()).cpu().double()
                    ref = F.scaled_dot_product_attention(q.cuda(), kd.cuda(), vd.cuda(), attn_mask=vis.cuda())
                    err, err_torch = (got - want).abs().max(), (ref.cpu().double() - want).abs().max()
                    return bool(err <= 2 * err_torch + 1e-3)

                yield f"attention cuda {hq}/{hkv} lq={lq} lk={lk} d={d} {str(dtype)[6:]} vs SDPA", vs_sdpa


def _attention_cases(device: str):
    """(name, check() -> True when it holds): flash attention against float64 (CPU kernels,
    and the CUDA tensor-core kernel on a GPU)."""
    if device == "cuda":
        # The selftest is what validates the opt-in CUDA attention kernel on this GPU.
        import os

        from .ops.attention import CUDA_OPT_IN

        before = os.environ.get(CUDA_OPT_IN)
        os.environ[CUDA_OPT_IN] = "1"
        try:
            yield from _cuda_attention_cases()
        finally:
            if before is None:
                del os.environ[CUDA_OPT_IN]
            else:
                os.environ[CUDA_OPT_IN] = before
        return
    if device != "cpu":
        return
    import math

    from .attention import BlockMask, flash_attention

    gen = torch.Generator().manual_seed(11)
    tol = {torch.float32: 2e-5, torch.bfloat16: 1.5e-2, torch.float16: 2e-3}
    for hq, hkv, lq, lk, d, kwargs in [(4, 2, 1, 300, 64, {}), (3, 1, 65, 130, 96, {"window": 40, "sinks": 4}),
                                       (2, 2, 33, 33, 128, {"softcap": 20.0}), (8, 1, 16, 200, 256, {})]:
        for dtype in _VALUE_DTYPES:
            q = torch.randn(1, hq, lq, d, generator=gen).to(dtype)
            k = torch.randn(1, hkv, lk, d, generator=gen).to(dtype)
            v = torch.randn(1, hkv, lk, d, generator=gen).to(dtype)

            def check(q=q, k=k, v=v, kwargs=kwargs, dtype=dtype, hq=hq, hkv=hkv, lq=lq, lk=lk, d=d):
                qd, kd, vd = (t.double() for t in (q, k, v))
                kd, vd = kd.repeat_interleave(hq // hkv, 1), vd.repeat_interleave(hq // hkv, 1)
                s = qd @ kd.transpose(-1, -2) / math.sqrt(d)
                if kwargs.get("softcap"):
                    s = kwargs["softcap"] * torch.tanh(s / kwargs["softcap"])
                pos = torch.arange(lq)[:, None] + lk - lq
                j = torch.arange(lk)[None, :]
                vis = j <= pos
                if kwargs.get("window"):
                    vis &= (pos - j < kwargs["window"]) | (j < kwargs["sinks"])
                want = torch.softmax(s.masked_fill(~vis, -math.inf), -1) @ vd
                got = flash_attention(q, k, v, **kwargs).double()
                return bool(((got - want).abs() / (1 + want.abs())).max() <= tol[dtype])

            yield f"attention {hq}/{hkv} lq={lq} lk={lk} d={d} {str(dtype)[6:]} {kwargs or ''}", check
    q, k, v = (torch.randn(1, 2, 128, 64, generator=gen) for _ in range(3))
    mask = BlockMask.from_dense(torch.tensor([[True, False], [False, True]]), q_len=128, kv_len=128)
    yield "attention block mask", lambda: bool(torch.allclose(
        flash_attention(q, k, v, block_mask=mask)[:, :, 64:],
        flash_attention(q[:, :, 64:], k[:, :, 64:], v[:, :, 64:]), atol=1e-5))


def _check(device: str, isa: str | None, rows_out: list) -> bool:
    ok = True
    failures = 0
    count = 0
    t0 = time.perf_counter()
    for name, vdtype, xdtype, a, w, x, bias in _cases(device):
        xd = x.to(device=device, dtype=xdtype)
        bd = bias.to(device=device, dtype=xdtype)
        want = _reference(w, x.to(xdtype).float(), bias.to(xdtype).float())
        got_lin = sparse_linear(xd, a, bd).cpu()
        got_mm = spmm(a, xd.T).cpu()
        err = max(_max_error(got_lin, want), _max_error(got_mm, (want - bias.to(xdtype).double()).T))
        count += 1
        if err != 0.0:
            failures += 1
            ok = False
            print(f"  FAIL {device} {isa or ''} {name} values={vdtype} x={xdtype}: max error {err}")
    for name, run_case, want in _act_cases(device):
        err = _max_error(run_case(), want)
        count += 1
        if err != 0.0:
            failures += 1
            ok = False
            print(f"  FAIL {device} {isa or ''} {name}: max error {err}")
    for name, check in [*_robustness_cases(device), *_attention_cases(device)]:
        count += 1
        try:
            passed = check()
        except Exception as exc:  # a failure to report, not to stop at
            passed = False
            print(f"  FAIL {device} {isa or ''} {name}: {type(exc).__name__}: {exc}")
        if not passed:
            failures += 1
            ok = False
            print(f"  FAIL {device} {isa or ''} {name}")
    rows_out.append((device, isa or "-", count, failures, time.perf_counter() - t0))
    return ok


def run(bench: bool = False) -> int:
    d = info()
    print(f"sparsecore {d['version']} selftest: CPU paths {d['cpu_isa_available']}, "
          f"CUDA {'compiled for ' + d['cuda_archs'] if d['cuda_compiled'] else 'not compiled'}, "
          f"{d['cuda_devices']} GPU(s) visible")
    rows: list = []
    ok = True
    for isa in d["cpu_isa_available"]:
        with use_cpu_isa(isa):
            ok &= _check("cpu", isa, rows)
    gpu = d["cuda_compiled"] and d["cuda_devices"] > 0 and torch.cuda.is_available()
    if gpu:
        ok &= _check("cuda", None, rows)
    print(f"\n{'device':<6} {'cpu isa':<13} {'cases':>6} {'failed':>7} {'seconds':>8}  result")
    for device, isa, count, failures, secs in rows:
        print(f"{device:<6} {isa:<13} {count:>6} {failures:>7} {secs:>8.2f}  {'PASS' if failures == 0 else 'FAIL'}")
    if not gpu:
        reason = ("this build has no CUDA kernels" if not d["cuda_compiled"]
                  else "no GPU is visible" if d["cuda_devices"] == 0 else "torch has no CUDA support")
        print(f"cuda   -             not run: {reason}")
    if bench and gpu:
        from .bench.gpu import run as bench_gpu

        bench_gpu()
    print("\nselftest", "PASSED" if ok else "FAILED")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    return run(bench="--bench" in argv)


if __name__ == "__main__":
    sys.exit(main())

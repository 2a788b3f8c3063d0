"""What a raw op's arguments mean, decoded independently of the kernels (numpy, float64).

Each decoder returns the dense float64 matrix the kernel is defined to multiply with, or
None when the arguments are inconsistent (the kernel must then raise). The kernels read
the CSR plan's bitmap instead of col_idx when one is given, and the weight-sparse runs
piece by piece from their offsets, so that is what the decoders do too.
"""

from __future__ import annotations

import numpy as np
import torch

OFFSET_STRIDE = 256
TILE = 32


def _f64(values: torch.Tensor) -> np.ndarray:
    return values.detach().cpu().double().numpy()


def _row_ptr_ok(row_ptr: np.ndarray, nnz: int) -> bool:
    return row_ptr[0] == 0 and row_ptr[-1] == nnz and bool(np.all(np.diff(row_ptr) >= 0))


def _chunks_ok(chunks: np.ndarray, rows: int) -> bool:
    if chunks.size < 2:
        return True
    return chunks[0] == 0 and chunks[-1] == rows and bool(np.all(np.diff(chunks) >= 0))


def _bits(row: np.ndarray) -> np.ndarray:
    return np.unpackbits(row.astype(np.uint8), bitorder="little")


def _indices(col_idx: torch.Tensor) -> np.ndarray:
    idx = col_idx.detach().cpu().numpy().astype(np.int64)
    return idx & 0xFFFF if col_idx.dtype == torch.int16 else idx


def csr(row_ptr, col_idx, values, row_chunks, bitmap, n_cols, batch):
    """batch: the number of rows of x; the bitmap plan is read for up to 8 (decode)."""
    rp = row_ptr.cpu().numpy()
    rows, nnz = rp.size - 1, values.numel()
    if not _row_ptr_ok(rp, nnz) or not _chunks_ok(row_chunks.numpy(), rows):
        return None
    vals = _f64(values)
    dense = np.zeros((rows, n_cols))
    if bitmap.numel() and batch <= 8:
        stride = bitmap.numel() // max(rows, 1)
        bm = bitmap.numpy().reshape(rows, stride)
        for r in range(rows):
            bits = _bits(bm[r])
            cols = np.nonzero(bits)[0]
            if cols.size != rp[r + 1] - rp[r] or (cols.size and cols[-1] >= n_cols):
                return None
            dense[r, cols] = vals[rp[r]:rp[r + 1]]
        return dense
    idx = _indices(col_idx)
    for r in range(rows):
        c = idx[rp[r]:rp[r + 1]]
        if c.size and (c.min() < 0 or c.max() >= n_cols):
            return None
        np.add.at(dense[r], c, vals[rp[r]:rp[r + 1]])  # duplicates add up, as the kernels do
    return dense


def bsr(row_ptr, col_idx, values, row_chunks, n_cols):
    rp = row_ptr.cpu().numpy()
    block_rows = rp.size - 1
    nnzb, bh, bw = values.shape
    if not _row_ptr_ok(rp, nnzb) or not _chunks_ok(row_chunks.numpy(), block_rows):
        return None
    block_cols = n_cols // bw
    idx = _indices(col_idx)
    vals = _f64(values)
    dense = np.zeros((block_rows * bh, n_cols))
    for br in range(block_rows):
        for p in range(rp[br], rp[br + 1]):
            if not 0 <= idx[p] < block_cols:
                return None
            dense[br * bh:(br + 1) * bh, idx[p] * bw:(idx[p] + 1) * bw] += vals[p]
    return dense


def nm(values, bitmap, mma_meta, n, m, n_cols):
    rows = values.shape[0]
    vals = _f64(values)
    bm = bitmap.numpy()
    per_byte = 8 // m * n
    dense = np.zeros((rows, n_cols))
    for r in range(rows):
        bits = _bits(bm[r])
        full = n_cols // 8
        counts = bits[: full * 8].reshape(full, 8).sum(1) if full else np.zeros(0)
        if np.any(counts != per_byte):
            return None
        tail = n_cols % 8
        if tail and bits[full * 8: full * 8 + tail].sum() != tail // m * n:
            return None
        if bits[n_cols:].any():
            return None
        cols = np.nonzero(bits[:n_cols])[0]
        dense[r, cols] = vals[r]
    return dense


def act_dense(packed, out_features):
    return _f64(packed)[:, :out_features].T


def act_runs(values, bitmap, offsets, in_features, out_features, active):
    """The runs of the active channels, piece by piece from their offsets (None when a piece
    does not end at the next offset or starts outside the values)."""
    padded = -(-out_features // TILE) * TILE
    row_bytes = padded // 8
    slots = -(-padded // OFFSET_STRIDE)
    count = values.numel() - (OFFSET_STRIDE + 16)
    vals = _f64(values)
    off = offsets.numpy()
    bm = bitmap.numpy()
    dense = np.zeros((out_features, in_features))
    for j in np.nonzero(active)[0]:
        bits = _bits(bm[j * row_bytes:(j + 1) * row_bytes])
        for s in range(slots):
            start = off[j * slots + s]
            if not 0 <= start <= count:
                return None
            o0, o1 = s * OFFSET_STRIDE, min(padded, (s + 1) * OFFSET_STRIDE)
            piece = np.nonzero(bits[o0:o1])[0] + o0
            end = off[j * slots + s + 1] if s + 1 < slots else (off[(j + 1) * slots] if j + 1 < in_features else count)
            if start + piece.size != end:
                return None
            keep = piece < out_features
            dense[piece[keep], j] = vals[start:start + piece.size][keep]
    return dense


def product(a: np.ndarray, x: torch.Tensor, bias: torch.Tensor | None) -> np.ndarray:
    """x @ a.T + bias in float64, with the NaN rule: a row of x holding NaN or Inf gives a
    NaN row (its entries are left out of the sum)."""
    xd = x.detach().double().numpy().reshape(-1, x.shape[-1])
    bad = ~np.isfinite(xd).all(axis=1)
    with np.errstate(all="ignore"):
        y = np.where(bad[:, None], 0.0, xd) @ a.T
        if bias is not None:
            y = y + bias.detach().double().numpy()
    y[bad] = np.nan
    return y


def matches(got: torch.Tensor, a: np.ndarray, x: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """Equal within the fp32-accumulation error bound (k * eps * sum |terms|); NaN where the
    reference has NaN; anything where the terms overflow fp32."""
    want = product(a, x, bias)
    xd = x.detach().double().numpy().reshape(-1, x.shape[-1])
    with np.errstate(all="ignore"):
        scale = np.abs(np.where(np.isfinite(xd), xd, 0.0)) @ np.abs(a).T
        if bias is not None:
            scale = scale + np.abs(bias.detach().double().numpy())
    g = got.detach().double().numpy().reshape(want.shape)
    eps = {torch.float32: 2.0 ** -23, torch.bfloat16: 2.0 ** -8, torch.float16: 2.0 ** -11}[got.dtype]
    k = a.shape[1] + 2
    overflow = ~np.isfinite(scale) | (scale > 3e38) | (np.abs(want) > {torch.float32: 3e38, torch.bfloat16: 3e38,
                                                                        torch.float16: 6e4}[got.dtype])
    nan = np.isnan(want) | np.isinf(want)  # inf only from an inf bias: then exactly that inf
    ok_nan = np.where(np.isinf(want), g == want, np.isnan(g)) | overflow
    # + the subnormal spacing of the output dtype: rounding a tiny result is absolute, not relative.
    tiny = {torch.float32: 2.0 ** -149, torch.bfloat16: 2.0 ** -133, torch.float16: 2.0 ** -24}[got.dtype]
    tol = (k * 2.0 ** -23 + eps) * scale + tiny
    with np.errstate(all="ignore"):
        ok_val = (np.abs(g - want) <= tol) | overflow
    return bool(np.all(np.where(nan, ok_nan, ok_val)))


def attention(q, k, v, row_ptr, col_idx, block_q, block_k, mask_batch, mask_heads, kv_start, kv_end, causal,
              window, sinks, scale):
    """What sparsecore::flash_attention's arguments mean, in float64: (out, nan_rows), or None
    when the block lists or KV ranges are inconsistent (the op must raise). Rows whose q is
    not finite, or that see a k or v row that is not finite, are NaN rows (the NaN rule)."""
    qd, kd, vd = (_f64(t) for t in (q, k, v))
    B, hq, lq, d = qd.shape
    hkv, lk = kd.shape[1], kd.shape[2]
    starts = np.zeros(B, np.int64) if kv_start is None else kv_start.numpy().astype(np.int64)
    ends = np.full(B, lk, np.int64) if kv_end is None else kv_end.numpy().astype(np.int64)
    if np.any(starts < 0) or np.any(ends < starts) or np.any(ends > lk):
        return None
    listed = np.ones((1, 1, max(1, lq), max(1, lk)), dtype=bool)
    if row_ptr is not None:
        rp = row_ptr.numpy().astype(np.int64)
        ci = col_idx.numpy().astype(np.int64)
        qb, kb = -(-lq // block_q), -(-lk // block_k)
        if not _row_ptr_ok(rp, ci.size) or np.any(np.diff(rp) > kb):
            return None
        grid = np.zeros((mask_batch * mask_heads * qb, kb), dtype=bool)
        for r in range(rp.size - 1):
            row = ci[rp[r]:rp[r + 1]]
            if row.size and (row.min() < 0 or row.max() >= kb or np.any(np.diff(row) <= 0)):
                return None
            grid[r, row] = True
        grid = grid.reshape(mask_batch, mask_heads, qb, kb)
        listed = grid.repeat(block_q, 2)[:, :, :lq].repeat(block_k, 3)[:, :, :, :lk]
    out = np.zeros_like(qd)
    nan_rows = np.zeros((B, hq, lq), dtype=bool)
    g = hq // hkv
    for b in range(B):
        for h in range(hq):
            mh = 0 if listed.shape[1] == 1 else (h if listed.shape[1] == hq else h // g)
            lm = listed[0 if listed.shape[0] == 1 else b, mh]
            kk, vv = kd[b, h // g], vd[b, h // g]
            bad_key = ~np.isfinite(kk).all(1) | ~np.isfinite(vv).all(1)
            for i in range(lq):
                pos = lk - lq + i
                j = np.arange(lk)
                vis = (j >= starts[b]) & (j < ends[b]) & lm[i]
                if causal:
                    vis &= j <= pos
                if window:
                    vis &= (pos - j < window) | (j < starts[b] + sinks)
                if not np.isfinite(qd[b, h, i]).all() or np.any(vis & bad_key):
                    nan_rows[b, h, i] = True
                    continue
                if not vis.any():
                    continue
                s = kk[vis] @ qd[b, h, i] * scale
                p = np.exp(s - s.max())
                out[b, h, i] = p @ vv[vis] / p.sum()
    return out, nan_rows

// The flash-attention kernels of flash_attn.cu (see there for the design):
// the main kernel and the split-KV merge, with the parameters they share.
// Included by flash_attn.cu only (its anonymous namespace).
#pragma once
#include <cuda_runtime.h>
#include <math_constants.h>

#include "../common/mma_sync.cuh"
#include "attn_tiles.h"

namespace sparsecore::cuda::attn {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

struct Params {
  const uint16_t* q;
  const uint16_t* k;
  const uint16_t* v;
  uint16_t* o;
  int64_t q_sb, q_sh, q_sl, k_sb, k_sh, k_sl, v_sb, v_sh, v_sl, o_sb, o_sh, o_sl;
  int batch, hq, hkv, lq, lk;
  float scale, softcap, log2_lambda;  // log2_lambda: BLASST threshold in log2 units; -inf: off
  bool causal;
  int64_t window, sinks;
  const int64_t* kv_start;  // device, batch entries, or null
  const int64_t* kv_end;
  float* lse;  // batch x hq x lq, or null
  const int64_t* row_ptr;  // block mask (device) or null
  const int32_t* col_idx;
  int64_t nnz, block_q, block_k, q_blocks, k_blocks;
  int mask_batch, mask_heads;
  int nh, ppb, splits;  // heads packed per block, positions per block, KV splits
  float* part_o;        // splits > 1: splits x rows x D, then m and l per row
  float* part_m;
  float* part_l;
  unsigned long long* stats;  // [tiles computed, tiles skipped] or null
};

// The natural-log log-sum-exp of a row from its running max m (log2 units) and
// sum l: -inf for a row that saw no key, NaN for a poisoned one.
__device__ __forceinline__ float row_lse(float m, float l, bool poison) {
  return poison ? CUDART_NAN_F : (l > 0.f ? (m + log2f(l)) * kLn2 : -CUDART_INF_F);
}

// Any of the 8 halfwords NaN or Inf (all exponent bits set).
template <bool kBf16>
__device__ __forceinline__ bool chunk_nonfinite(uint4 c) {
  const uint32_t e = kBf16 ? 0x7f807f80u : 0x7c007c00u;
  const uint32_t w[4] = {c.x, c.y, c.z, c.w};
  bool bad = false;
#pragma unroll
  for (int i = 0; i < 4; ++i) bad |= ((w[i] & e & 0xffffu) == (e & 0xffffu)) || ((w[i] & e & 0xffff0000u) == (e & 0xffff0000u));
  return bad;
}

// Key j is visible from the row at key position pos (attention.h's rules).
__device__ __forceinline__ bool visible(const Params& p, int64_t kvs, int64_t kve, int64_t pos, int64_t j) {
  if (j < kvs || j >= kve) return false;
  if (p.causal && j > pos) return false;
  if (p.window > 0 && pos - j >= p.window && j >= kvs + p.sinks) return false;
  return true;
}

// Walks the key tiles of a block's split: listed blocks (mask) or kKeys-key
// tiles, each cut into tiles of at most kKeys keys.
template <int kKeys>
struct TileCursor {
  const int32_t* col_idx;  // null: no mask
  int64_t block_k, k_blocks, lk;
  int64_t e, e_end, j0, j_end, prev;
  __device__ void init(const Params& p, int64_t e0, int64_t e1) {
    col_idx = p.row_ptr ? p.col_idx : nullptr;
    block_k = p.block_k, k_blocks = p.k_blocks, lk = p.lk;
    e = e0, e_end = e1, j0 = 0, j_end = 0, prev = -1;
  }
  // The next tile [*start, *start + *n); false when none is left.
  __device__ bool next(int64_t* start, int* n) {
    while (j0 >= j_end) {
      if (e >= e_end) return false;
      int64_t lo, hi;
      if (col_idx) {
        const int64_t kb = col_idx[e++];
        if (kb < 0 || kb >= k_blocks || kb <= prev) continue;  // never read outside the cache
        prev = kb;
        lo = kb * block_k, hi = lo + block_k;
      } else {
        lo = e * kKeys, hi = lo + kKeys;
        ++e;
      }
      j0 = lo, j_end = hi < lk ? hi : lk;
    }
    *start = j0;
    *n = int(j_end - j0 < kKeys ? j_end - j0 : kKeys);
    j0 += *n;
    return true;
  }
};

template <int D, bool kBf16>
__global__ void __launch_bounds__(FaConfig<D>::kThreads) fa_kernel(Params p) {
  using Cfg = FaConfig<D>;
  constexpr int kKeys = Cfg::kKeys, kChunks = Cfg::kChunks, kNT = kKeys / 8, kDT = D / 8;
  extern __shared__ __align__(128) uint16_t smem[];
  __shared__ unsigned bad_keys[kKeys / 32 > 0 ? kKeys / 32 : 1];
  __shared__ int q_bad[Cfg::kRows];
  __shared__ int any_bad;
  uint16_t* sq = smem;
  uint16_t* const sk0 = smem + Cfg::kQElems;
  uint16_t* const sv0 = sk0 + 2 * Cfg::kKVElems;

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int packs = p.hq / p.nh;
  const int b = blockIdx.y / packs, h0 = (blockIdx.y % packs) * p.nh, kvh = h0 / (p.hq / p.hkv);
  const int pos0 = blockIdx.x * p.ppb;
  const int rows_used = p.nh * p.ppb;
  int64_t kvs = p.kv_start ? p.kv_start[b] : 0, kve = p.kv_end ? p.kv_end[b] : p.lk;
  kvs = kvs < 0 ? 0 : (kvs > p.lk ? p.lk : kvs);
  kve = kve < kvs ? kvs : (kve > p.lk ? p.lk : kve);
  const int64_t off = int64_t(p.lk) - p.lq;  // q row i sits at key position off + i

  // Q tile: packed rows, zero past the block's rows.
  for (int c = tid; c < Cfg::kRows * kChunks; c += Cfg::kThreads) {
    const int r = c / kChunks, ch = c % kChunks;
    const PackedRow pr = packed_row(r, p.nh);
    const bool ok = r < rows_used && pos0 + pr.pos < p.lq;
    const uint16_t* src = ok ? p.q + b * p.q_sb + (h0 + pr.head) * p.q_sh + (pos0 + pr.pos) * p.q_sl + ch * 8 : p.q;
    cp_async16(sq + tile_offset(r, ch, kChunks), src, ok);
  }
  cp_async_commit();
  for (int r = tid; r < Cfg::kRows; r += Cfg::kThreads) q_bad[r] = 0;

  // This block's list of units and this split's share of it.
  int64_t e0 = 0, e1 = 0;
  const int pos_last = (pos0 + p.ppb < p.lq ? pos0 + p.ppb : p.lq) - 1;
  if (p.row_ptr) {
    const int64_t mb = p.mask_batch == 1 ? 0 : b;
    const int64_t mh = p.mask_heads == 1 ? 0 : (p.mask_heads == p.hq ? h0 : kvh);
    const int64_t r = (mb * p.mask_heads + mh) * p.q_blocks + pos0 / p.block_q;
    e0 = p.row_ptr[r], e1 = p.row_ptr[r + 1];
    e0 = e0 < 0 ? 0 : (e0 > p.nnz ? p.nnz : e0);
    e1 = e1 < e0 ? e0 : (e1 > p.nnz ? p.nnz : e1);
  } else {
    int64_t lo = kvs, hi = kve;
    if (p.causal && off + pos_last + 1 < hi) hi = off + pos_last + 1;
    if (p.window > 0 && p.sinks == 0 && off + pos0 - p.window + 1 > lo) lo = off + pos0 - p.window + 1;
    if (hi > lo) e0 = lo / kKeys, e1 = (hi + kKeys - 1) / kKeys;
  }
  int64_t u0, u1;
  split_range(e1 - e0, blockIdx.z, p.splits, &u0, &u1);
  TileCursor<kKeys> cur;
  cur.init(p, e0 + u0, e0 + u1);

  // This warp's rows: thread rows g and g + 8 of the warp's 16.
  const int r_lo = warp * 16 + (lane >> 2), r_hi = r_lo + 8;
  const PackedRow pr_lo = packed_row(r_lo, p.nh), pr_hi = packed_row(r_hi, p.nh);
  const bool ok_lo = r_lo < rows_used && pos0 + pr_lo.pos < p.lq, ok_hi = r_hi < rows_used && pos0 + pr_hi.pos < p.lq;
  const int64_t kp_lo = off + pos0 + pr_lo.pos, kp_hi = off + pos0 + pr_hi.pos;  // key positions
  // The warp's first and last positions (its rows are consecutive packed rows).
  const int w_first = warp * 16, w_last_row = min(warp * 16 + 15, rows_used - 1);
  const bool warp_active = w_first < rows_used && pos0 + packed_row(w_first, p.nh).pos < p.lq;
  const int64_t kp_min = off + pos0 + packed_row(w_first, p.nh).pos;
  const int64_t kp_max = off + min(pos0 + packed_row(w_last_row, p.nh).pos, p.lq - 1);

  float o[kDT][4];
  #pragma unroll
  for (int i = 0; i < kDT; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float m_lo = -CUDART_INF_F, m_hi = -CUDART_INF_F, l_lo = 0.f, l_hi = 0.f;
  bool poison_lo = false, poison_hi = false;
  unsigned long long computed = 0, skipped = 0;

  auto load_tile = [&](int stage, int64_t j0, int n) {
    uint16_t* sk = sk0 + stage * Cfg::kKVElems;
    uint16_t* sv = sv0 + stage * Cfg::kKVElems;
    const uint16_t* kb = p.k + b * p.k_sb + kvh * p.k_sh;
    const uint16_t* vb = p.v + b * p.v_sb + kvh * p.v_sh;
    for (int c = tid; c < kKeys * kChunks; c += Cfg::kThreads) {
      const int r = c / kChunks, ch = c % kChunks;
      const bool ok = r < n;
      cp_async16(sk + tile_offset(r, ch, kChunks), ok ? kb + (j0 + r) * p.k_sl + ch * 8 : p.k, ok);
      cp_async16(sv + tile_offset(r, ch, kChunks), ok ? vb + (j0 + r) * p.v_sl + ch * 8 : p.v, ok);
    }
  };

  int64_t j0 = 0, jn = 0;
  int n = 0, nn = 0;
  bool have = cur.next(&j0, &n);
  if (have) load_tile(0, j0, n);
  cp_async_commit();
  // Q arrived: flag its non-finite rows (their output rows are NaN).
  cp_async_wait<1>();
  __syncthreads();
  for (int c = tid; c < Cfg::kRows * kChunks; c += Cfg::kThreads) {
    const int r = c / kChunks;
    if (chunk_nonfinite<kBf16>(*reinterpret_cast<const uint4*>(sq + tile_offset(r, c % kChunks, kChunks)))) q_bad[r] = 1;
  }
  __syncthreads();
  poison_lo = q_bad[r_lo] != 0, poison_hi = q_bad[r_hi] != 0;

  for (int stage = 0; have; stage ^= 1) {
    const bool more = cur.next(&jn, &nn);
    if (more) load_tile(stage ^ 1, jn, nn);
    cp_async_commit();
    cp_async_wait<1>();
    if (tid < kKeys / 32) bad_keys[tid] = 0;
    if (tid == 0) any_bad = 0;
    __syncthreads();
    uint16_t* sk = sk0 + stage * Cfg::kKVElems;
    uint16_t* sv = sv0 + stage * Cfg::kKVElems;
    // Keys whose k or v holds NaN/Inf: zeroed here, and the rows that see them
    // are poisoned below (a row that does not see them stays exact).
    for (int c = tid; c < n * kChunks; c += Cfg::kThreads) {
      const int r = c / kChunks, at = tile_offset(r, c % kChunks, kChunks);
      if (chunk_nonfinite<kBf16>(*reinterpret_cast<const uint4*>(sk + at)) ||
          chunk_nonfinite<kBf16>(*reinterpret_cast<const uint4*>(sv + at))) {
        atomicOr(&bad_keys[r / 32], 1u << (r % 32));
        any_bad = 1;
      }
    }
    __syncthreads();
    const bool tile_bad = any_bad != 0;
    if (tile_bad) {
      for (int c = tid; c < n * kChunks; c += Cfg::kThreads) {
        const int r = c / kChunks, at = tile_offset(r, c % kChunks, kChunks);
        if ((bad_keys[r / 32] >> (r % 32)) & 1u) {
          *reinterpret_cast<uint4*>(sk + at) = make_uint4(0, 0, 0, 0);
          *reinterpret_cast<uint4*>(sv + at) = make_uint4(0, 0, 0, 0);
        }
      }
      __syncthreads();
    }

    // Tile class for this warp's rows: empty (skipped), full (no masking) or partial.
    const int64_t jl = j0 + n - 1;
    const bool empty = !warp_active || j0 >= kve || jl < kvs || (p.causal && j0 > kp_max) ||
                       (p.window > 0 && kp_min - jl >= p.window && j0 >= kvs + p.sinks);
    const bool full = n == kKeys && j0 >= kvs && jl < kve && (!p.causal || jl <= kp_min) &&
                      (p.window <= 0 || kp_max - j0 < p.window);
    if (!empty) {
      float s[kNT][4];
      #pragma unroll
      for (int i = 0; i < kNT; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f;
      #pragma unroll
      for (int ks = 0; ks < D / 16; ++ks) {
        uint32_t a[4];
        const RowChunk qa = q_ldmatrix(lane, warp * 16, ks);
        ldmatrix_x4(a, sq + tile_offset(qa.row, qa.chunk, kChunks));
        #pragma unroll
        for (int pp = 0; pp < kKeys / 16; ++pp) {
          const RowChunk ka = k_ldmatrix(lane, pp, ks);
          mma_b_pair<kBf16, false>(s[2 * pp], s[2 * pp + 1], a, sk + tile_offset(ka.row, ka.chunk, kChunks));
        }
      }
      // Scores in log2 units, masked where the tile is partial; row maxima.
      float t_lo = -CUDART_INF_F, t_hi = -CUDART_INF_F;
      #pragma unroll
      for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          float x = s[nt][e] * p.scale;
          if (p.softcap > 0.f) x = p.softcap * tanhf(x / p.softcap);
          x *= kLog2e;
          const int col = 8 * nt + c_col(lane, e);
          const int64_t j = j0 + col;
          const bool hi_row = e >= 2;
          if (!full) {
            const bool vis = col < n && visible(p, kvs, kve, hi_row ? kp_hi : kp_lo, j);
            if (!vis) x = -CUDART_INF_F;
          }
          if (tile_bad && col < n && ((bad_keys[col / 32] >> (col % 32)) & 1u) &&
              visible(p, kvs, kve, hi_row ? kp_hi : kp_lo, j)) {
            (hi_row ? poison_hi : poison_lo) = true;
            x = -CUDART_INF_F;
          }
          s[nt][e] = x;
          if (hi_row) t_hi = fmaxf(t_hi, x);
          else t_lo = fmaxf(t_lo, x);
        }
      for (int sh = 1; sh <= 2; sh <<= 1) {
        t_lo = fmaxf(t_lo, __shfl_xor_sync(0xffffffffu, t_lo, sh));
        t_hi = fmaxf(t_hi, __shfl_xor_sync(0xffffffffu, t_hi, sh));
      }
      // BLASST: the warp skips the tile when every row's tile max lies below
      // its running max by more than -log(lambda) (one vote per warp).
      bool skip = false;
      if (p.log2_lambda > -CUDART_INF_F) {
        const bool lo_small = !ok_lo || t_lo == -CUDART_INF_F || t_lo - m_lo < p.log2_lambda;
        const bool hi_small = !ok_hi || t_hi == -CUDART_INF_F || t_hi - m_hi < p.log2_lambda;
        skip = __all_sync(0xffffffffu, lo_small && hi_small);
      }
      if (skip) {
        ++skipped;
      } else {
        ++computed;
        const float mn_lo = fmaxf(m_lo, t_lo), mn_hi = fmaxf(m_hi, t_hi);
        const float ms_lo = mn_lo == -CUDART_INF_F ? 0.f : mn_lo, ms_hi = mn_hi == -CUDART_INF_F ? 0.f : mn_hi;
        const float al_lo = m_lo == -CUDART_INF_F ? 0.f : exp2f(m_lo - ms_lo);
        const float al_hi = m_hi == -CUDART_INF_F ? 0.f : exp2f(m_hi - ms_hi);
        m_lo = mn_lo, m_hi = mn_hi;
        float sum_lo = 0.f, sum_hi = 0.f;
        #pragma unroll
        for (int nt = 0; nt < kNT; ++nt) {
          s[nt][0] = exp2f(s[nt][0] - ms_lo), s[nt][1] = exp2f(s[nt][1] - ms_lo);
          s[nt][2] = exp2f(s[nt][2] - ms_hi), s[nt][3] = exp2f(s[nt][3] - ms_hi);
          sum_lo += s[nt][0] + s[nt][1];
          sum_hi += s[nt][2] + s[nt][3];
        }
        l_lo = l_lo * al_lo + sum_lo, l_hi = l_hi * al_hi + sum_hi;
        #pragma unroll
        for (int dt = 0; dt < kDT; ++dt) {
          o[dt][0] *= al_lo, o[dt][1] *= al_lo;
          o[dt][2] *= al_hi, o[dt][3] *= al_hi;
        }
        #pragma unroll
        for (int ks = 0; ks < kKeys / 16; ++ks) {
          const uint32_t a[4] = {pack2<kBf16>(s[2 * ks][0], s[2 * ks][1]), pack2<kBf16>(s[2 * ks][2], s[2 * ks][3]),
                                 pack2<kBf16>(s[2 * ks + 1][0], s[2 * ks + 1][1]),
                                 pack2<kBf16>(s[2 * ks + 1][2], s[2 * ks + 1][3])};
          #pragma unroll
          for (int pp = 0; pp < D / 16; ++pp) {
            const RowChunk va = v_ldmatrix(lane, ks, pp);
            mma_b_pair<kBf16, true>(o[2 * pp], o[2 * pp + 1], a, sv + tile_offset(va.row, va.chunk, kChunks));
          }
        }
      }
    }
    __syncthreads();  // the stage is reloaded by the next iteration's prefetch
    j0 = jn, n = nn, have = more;
  }
  cp_async_wait<0>();

  // Row sums and poison flags are split over the 4 lanes of a quad.
  for (int sh = 1; sh <= 2; sh <<= 1) {
    l_lo += __shfl_xor_sync(0xffffffffu, l_lo, sh);
    l_hi += __shfl_xor_sync(0xffffffffu, l_hi, sh);
    poison_lo |= __shfl_xor_sync(0xffffffffu, int(poison_lo), sh) != 0;
    poison_hi |= __shfl_xor_sync(0xffffffffu, int(poison_hi), sh) != 0;
  }
  // Every lane writes its columns; lane t = 0 of a quad writes m, l and the log-sum-exp.
  #pragma unroll
  for (int half = 0; half < 2; ++half) {
    const bool ok = half ? ok_hi : ok_lo;
    if (!ok) continue;
    const PackedRow pr = half ? pr_hi : pr_lo;
    const int h = h0 + pr.head, i = pos0 + pr.pos;
    const float m = half ? m_hi : m_lo, l = half ? l_hi : l_lo;
    const bool poison = half ? poison_hi : poison_lo;
    const int64_t row = (int64_t(b) * p.hq + h) * p.lq + i;
    if (p.splits > 1) {
      float* po = p.part_o + (int64_t(blockIdx.z) * p.batch * p.hq * p.lq + row) * D;
      #pragma unroll
      for (int dt = 0; dt < kDT; ++dt) {
        const int d = 8 * dt + 2 * (lane & 3);
        po[d] = o[dt][2 * half], po[d + 1] = o[dt][2 * half + 1];
      }
      if ((lane & 3) == 0) {
        const int64_t at = int64_t(blockIdx.z) * p.batch * p.hq * p.lq + row;
        p.part_m[at] = m;
        p.part_l[at] = poison ? CUDART_NAN_F : l;
      }
      continue;
    }
    const float inv = l > 0.f ? 1.f / l : 0.f;
    uint16_t* out = p.o + b * p.o_sb + h * p.o_sh + i * p.o_sl;
    #pragma unroll
    for (int dt = 0; dt < kDT; ++dt) {
      const int d = 8 * dt + 2 * (lane & 3);
      const float x0 = poison ? CUDART_NAN_F : o[dt][2 * half] * inv;
      const float x1 = poison ? CUDART_NAN_F : o[dt][2 * half + 1] * inv;
      *reinterpret_cast<uint32_t*>(out + d) = pack2<kBf16>(x0, x1);
    }
    if (p.lse && (lane & 3) == 0)
      p.lse[row] = row_lse(m, l, poison);
  }
  if (p.stats && lane == 0 && (computed | skipped)) {
    atomicAdd(p.stats, computed);
    atomicAdd(p.stats + 1, skipped);
  }
}

// Split-KV merge: one thread per (row, d) of the output; m in log2 units.
template <bool kBf16>
__global__ void fa_merge(Params p, int dim) {
  const int64_t rows = int64_t(p.batch) * p.hq * p.lq;
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= rows * dim) return;
  const int64_t row = idx / dim;
  const int d = int(idx % dim);
  float m = -CUDART_INF_F;
  bool poison = false;
  for (int z = 0; z < p.splits; ++z) {
    const int64_t at = z * rows + row;
    m = fmaxf(m, p.part_m[at]);
    poison |= p.part_l[at] != p.part_l[at];
  }
  const float ms = m == -CUDART_INF_F ? 0.f : m;
  float l = 0.f, acc = 0.f;
  for (int z = 0; z < p.splits; ++z) {
    const int64_t at = z * rows + row;
    const float w = p.part_m[at] == -CUDART_INF_F ? 0.f : exp2f(p.part_m[at] - ms);
    if (!poison) l += p.part_l[at] * w;
    acc += p.part_o[at * dim + d] * w;
  }
  const float x = poison ? CUDART_NAN_F : (l > 0.f ? acc / l : 0.f);
  const int64_t i = row % p.lq, bh = row / p.lq, h = bh % p.hq, b = bh / p.hq;
  uint16_t* out = p.o + b * p.o_sb + h * p.o_sh + i * p.o_sl + d;
  *out = uint16_t(pack2<kBf16>(x, 0.f) & 0xffffu);  // the low half: x rounded to nearest
  if (d == 0 && p.lse) p.lse[row] = row_lse(m, l, poison);
}

}  // namespace
}  // namespace sparsecore::cuda::attn

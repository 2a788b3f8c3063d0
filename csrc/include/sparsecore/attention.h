// Flash attention forward on the CPU: out = softmax(scale * q k^T + mask) v
// with an online softmax (fp32 accumulation), block-sparse by an optional
// list of KV blocks per q block, and BLASST tile skipping.
//
// Positions. Query row i sits at key position p_i = Lk - Lq + i (the queries
// are the last Lq entries of the KV cache), so chunked prefill and decode are
// the same call. Batch b holds valid keys [kv_start[b], kv_end[b]) (left and
// right padding; both default to [0, Lk)); padding only hides keys, it does
// not move the queries. Key j is visible from row i when
// kv_start <= j < kv_end and
//   - causal: j <= p_i;
//   - window w > 0 (causal only): p_i - j < w, or j < kv_start + sinks (the
//     attention sinks of StreamingLLM stay visible).
// A row that sees no key returns zeros and log-sum-exp -inf.
//
// Non-finite input: a q row holding NaN or Inf gives a NaN output row (and
// NaN lse); so does a row that sees a key whose k or v holds NaN or Inf in a
// tile that is computed (a tile BLASST skips does not read its v).
#pragma once
#include <cstdint>

#include "sparsecore/core.h"

namespace sparsecore {

// A 4-D [batch, heads, len, dim] tensor; dim is contiguous (stride 1), the
// other strides (in elements) are anything >= 0.
struct AttnTensor {
  void* data = nullptr;
  DType dtype = DType::kFloat32;
  int64_t batch = 0, heads = 0, len = 0, dim = 0;
  int64_t stride_b = 0, stride_h = 0, stride_l = 0;
};

// Block-sparse mask, planned once: for mask batch mb (1 or B of them), mask
// head mh (1, Hkv or Hq of them) and q block qb (rows [qb * block_q, ...)),
// the KV blocks (keys [kb * block_k, ...)) to compute are
//   col_idx[row_ptr[r] .. row_ptr[r + 1]),  r = (mb * heads + mh) * q_blocks + qb,
// strictly ascending. Blocks not listed cost nothing. Whether a listed block
// needs element masking (causal, window, padding edges) is decided by the
// kernel from the positions, so a list can never unmask what the position
// rules hide. Contents are checked as they are read (kInvalidIndex).
struct AttnBlockMask {
  int64_t block_q = 64, block_k = 64;  // multiples of 16
  int64_t batch = 1, heads = 1;
  int64_t q_blocks = 0, k_blocks = 0;
  const int64_t* row_ptr = nullptr;  // batch * heads * q_blocks + 1 entries, row_ptr[last] = nnz
  const int32_t* col_idx = nullptr;  // nnz entries
  int64_t nnz = 0;
};

struct AttnOptions {
  float scale = 1.f;
  float softcap = 0.f;  // > 0: s = softcap * tanh(s / softcap)
  bool causal = true;
  int64_t window = 0;  // 0: no window
  int64_t sinks = 0;
  const int64_t* kv_start = nullptr;  // B entries or null (0)
  const int64_t* kv_end = nullptr;    // B entries or null (Lk)
  // BLASST: a computed tile whose scores are all below the running row max
  // by more than -log_lambda (exp(rowmax - m) < lambda for every row) skips
  // its exp and P V. -inf: never skip.
  float blasst_log_lambda = -__builtin_inff();
  float* lse = nullptr;  // null or B x Hq x Lq fp32, contiguous
  // Tile sizes of the dense (mask-free) path; 0 picks the default.
  int64_t block_q = 0, block_k = 0;
};

// Tiles (16..block_k keys x one group of q rows) that reached the softmax,
// and those of them BLASST skipped.
struct AttnStats {
  int64_t tiles_computed = 0;
  int64_t tiles_skipped = 0;
};

// q: B x Hq x Lq x D, k and v: B x Hkv x Lk x D (Hq a multiple of Hkv, any
// of the three dtypes, k and v the same dtype), out: B x Hq x Lq x D in q's
// dtype. D in [1, kAttnMaxDim]. mask may be null (every block, as the
// position rules allow). stats may be null.
constexpr int64_t kAttnMaxDim = 512;
Status flash_attention_cpu(const AttnTensor& q, const AttnTensor& k, const AttnTensor& v, const AttnTensor& out,
                           const AttnOptions& opt, const AttnBlockMask* mask, AttnStats* stats);

// The same attention on an NVIDIA GPU (sm_80+) with tensor cores: q, k, v
// and out bf16 or fp16 (one dtype), head dim 64, 128 or 256, every pointer
// (tensors, kv_start/kv_end, lse, the mask lists) in device memory, 16-byte
// aligned with strides a multiple of 8 elements (kUnsupported otherwise).
// Launched on `stream` (a cudaStream_t); nothing is synchronised. stats: null
// or two device counters [tiles computed, tiles skipped] the kernel adds to
// (a tile here is up to 64 keys, 32 at D = 256, x one warp's 16 q rows).
// Block indices outside the matrix or out of order are skipped, kv_start /
// kv_end are clamped into [0, Lk] (checking them would cost a synchronisation).
Status flash_attention_cuda(const AttnTensor& q, const AttnTensor& k, const AttnTensor& v, const AttnTensor& out,
                            const AttnOptions& opt, const AttnBlockMask* mask, unsigned long long* stats,
                            void* stream);

// Quest page scores (Tang et al., 2024). kmin and kmax: B x Hkv x pages x D
// (len = pages; the same dtype, any of the three, which may differ from q's),
// the channel-wise min and max of K over each page of keys. For batch b, KV
// head h and page p,
//   scores[(b * Hkv + h) * pages + p] = max over the q rows g of the group
//       (q heads h * Hq / Hkv .. + Hq / Hkv, every position) of
//       sum_d max(q_gd * kmin_pd, q_gd * kmax_pd),
// an upper bound of q_g . k for every key k of the page. q: B x Hq x Lq x D
// (Hq a multiple of Hkv). A q row holding NaN or Inf counts as zeros (its
// attention row is NaN by the NaN rule); non-finite bounds give non-finite scores.
Status quest_page_scores_cpu(const AttnTensor& q, const AttnTensor& kmin, const AttnTensor& kmax, float* scores);

}  // namespace sparsecore

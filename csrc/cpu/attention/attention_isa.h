// Internal interface between the attention dispatcher (attention.cc) and its
// per-ISA kernel translation units. Plain structs and functions only.
#pragma once
#include <cstdint>

#include "sparsecore/attention.h"

namespace sparsecore::cpu {

// Keys per inner tile: the unit of softmax rescaling, BLASST skipping and
// element masking. A KV block longer than this is walked in tiles.
constexpr int64_t kAttnTileK = 64;
// Rows of q a kernel call processes (heads x positions sharing one KV list)
// are cut into chunks of one or two vectors: the scores of a chunk and its
// output accumulators stay in L1/L2 while a K/V tile is reused by every chunk.
constexpr int kAttnMaxRowVecs = 2;
// Tasks with at most this many q rows (decode: the q heads of one KV head x a
// few positions) run the decode kernel, which puts the head dim in the lanes.
constexpr int64_t kAttnDecodeRows = 8;

// Everything about the call that every task shares (resolved by the dispatcher).
struct AttnArgs {
  AttnTensor q, k, v, out;
  AttnOptions opt;
  int64_t group = 1;                // Hq / Hkv
  const int64_t* kv_start = nullptr;  // B entries (never null here)
  const int64_t* kv_end = nullptr;
  int64_t k_blocks = 0;  // blocks of the list's block size covering Lk
};

// One task: the q rows of heads [h0, h0 + nh) (all of one KV head's group,
// or a single head when the mask differs per q head) at positions [i0, i1),
// over entries [e0, e1) of a KV block list (blocks == null: block e is e).
struct AttnRows {
  int64_t b = 0, kv_head = 0, h0 = 0, nh = 1;
  int64_t i0 = 0, i1 = 0;
  const int32_t* blocks = nullptr;
  int64_t block_k = kAttnTileK;
  int64_t e0 = 0, e1 = 0;
};

// Unnormalised results of a task over part of its KV list (split-KV decode):
// o (rows x D, row-major), the running max m and sum l per row, and a poison
// flag per row; merged by log-sum-exp in the dispatcher.
struct AttnPartial {
  float* o = nullptr;
  float* m = nullptr;
  float* l = nullptr;
  uint8_t* poison = nullptr;
};

// Floats of one chunk of rc rows: Q^T and O^T (dim x rc each), seven state
// arrays of rc and six bounds, rounded to 64 bytes.
static inline int64_t attn_chunk_floats(int64_t dim, int64_t rc) { return ((2 * dim + 7) * rc + 6 + 15) / 16 * 16; }
// Floats of scratch a task of `rows` q rows needs on any path (the thread's
// scratch; the kernels load unaligned): the chunks, then K, V, scores and two flag arrays
// of one tile.
static inline int64_t attn_scratch_floats(int64_t rows, int64_t dim) {
  // chunks * rc < rows + 32 on every path, and there are at most rows / 4 + 1 chunks.
  const int64_t rc_max = int64_t(kAttnMaxRowVecs) * 16;
  // The decode kernel needs 3 x 8 x dim + 8 x kAttnTileK: always less.
  return (rows + rc_max) * (2 * dim + 7) + (rows / 4 + 1) * 21 + kAttnTileK * (2 * dim + rc_max + 2) + 5 * 16;
}

// Floats of scratch quest_scores needs: q+ and q- of the group's rows, and a flag per row.
static inline int64_t quest_scratch_floats(int64_t rows, int64_t dim) { return rows * (2 * dim + 1); }

// attn_rows runs one task; writes out/lse (part == null) or the partial
// results. Returns false when a block index is out of range or the list not
// ascending. quest_scores writes out[p] for pages [p0, p1) of batch b, KV head
// h (see quest_page_scores_cpu).
#define SPARSECORE_DECLARE_ATTN_ISA(ns)                                                                      \
  namespace ns {                                                                                             \
  bool attn_rows(const AttnArgs& a, const AttnRows& w, float* scratch, const AttnPartial* part, AttnStats* st); \
  void quest_scores(const AttnTensor& q, const AttnTensor& kmin, const AttnTensor& kmax, int64_t b, int64_t h, \
                    int64_t p0, int64_t p1, float* scratch, float* out);                                      \
  }

SPARSECORE_DECLARE_ATTN_ISA(scalar)
SPARSECORE_DECLARE_ATTN_ISA(avx2)
SPARSECORE_DECLARE_ATTN_ISA(avx512)
SPARSECORE_DECLARE_ATTN_ISA(avx512_simde)

#undef SPARSECORE_DECLARE_ATTN_ISA

}  // namespace sparsecore::cpu

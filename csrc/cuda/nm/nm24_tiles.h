// The pipelined 2:4 tensor-core GEMM's tiling, as host/device functions:
// which 16-byte chunks each thread copies from global into shared memory
// (cp.async) for one pipeline stage, where every mma.sp operand register of
// every warp is read from shared memory, and which output each accumulator
// is. The CUDA kernel (nm24_mma.cu) addresses everything through these; the
// CPU test (test_nm24_fragments) runs a whole thread block through them
// with an emulated shared memory and an emulated mma.sp and must reproduce
// the dense product bit for bit.
//
// A block computes a 64 x 64 tile of C = A B (A: rows x k, 2:4 compressed,
// the weight; B: k x n, the activations, each column k-contiguous). Four
// warps in a 2 x 2 grid own 32 x 32 of it each: 2 row tiles of 16 times 4
// column tiles of 8, 8 mma.sp per 32 of k. k advances 64 per stage; three
// stages are in flight (copy of stage s + 2 overlaps the math of stage s).
// Reuse over the warps is what the direct kernel lacks: a block reads each
// element of A and B from global memory once per tile instead of per warp.
#pragma once
#include <cstdint>

#include "nm24_fragments.h"
#include "sparsecore/macros.h"

namespace sparsecore::cuda::nm24 {

struct Nm24TileConfig {
  static constexpr int kWarpsM = 2;
  static constexpr int kWarpsN = 2;
  static constexpr int kThreads = 32 * kWarpsM * kWarpsN;
  static constexpr int kBlockM = 64;  // rows of A per block
  static constexpr int kBlockN = 64;  // columns of B per block
  static constexpr int kBlockK = 64;  // logical k per stage (two mma k steps)
  static constexpr int kStages = 3;
  static constexpr int kWarpTilesM = kBlockM / kWarpsM / kTileM;  // 2
  static constexpr int kWarpTilesN = kBlockN / kWarpsN / kTileN;  // 4
  static constexpr int kKSteps = kBlockK / kTileK;                // 2
  // Shared memory in 32-bit words. Rows are padded by 4 words: a fragment
  // read touches 8 rows x 4 consecutive words, and row strides of 20 and 36
  // words put those 32 words in 32 different banks.
  static constexpr int kARowWords = kBlockK / 4;  // 32 compressed bf16/fp16 values
  static constexpr int kARowStride = kARowWords + 4;
  static constexpr int kBRowWords = kBlockK / 2;  // 64 values
  static constexpr int kBRowStride = kBRowWords + 4;
  static constexpr int kMetaStageWords = kBlockM / kTileM * kKSteps * kMetaWords;
  static constexpr int kAOffset = 0;
  static constexpr int kBOffset = kBlockM * kARowStride;
  static constexpr int kMetaOffset = kBOffset + kBlockN * kBRowStride;
  static constexpr int kStageWords = kMetaOffset + kMetaStageWords;
  static constexpr int kSmemBytes = kStages * kStageWords * 4;
  // 16-byte chunks (4 words) per stage and per thread.
  static constexpr int kAChunks = kBlockM * kARowWords / 4;
  static constexpr int kBChunks = kBlockN * kBRowWords / 4;
  static constexpr int kMetaChunks = kMetaStageWords / 4;
  static constexpr int kAChunksPerThread = kAChunks / kThreads;
  static constexpr int kBChunksPerThread = kBChunks / kThreads;
};
using TileCfg = Nm24TileConfig;
static_assert(TileCfg::kSmemBytes <= 48 * 1024, "static shared memory is limited to 48 KiB");
static_assert(TileCfg::kAChunks % TileCfg::kThreads == 0 && TileCfg::kBChunks % TileCfg::kThreads == 0,
              "every thread copies the same number of chunks");
static_assert(TileCfg::kMetaChunks <= TileCfg::kThreads, "one metadata chunk per thread at most");
static_assert(TileCfg::kARowStride % 4 == 0 && TileCfg::kBRowStride % 4 == 0 && TileCfg::kBOffset % 4 == 0 &&
                  TileCfg::kMetaOffset % 4 == 0 && TileCfg::kStageWords % 4 == 0,
              "cp.async writes 16-byte aligned chunks");

// Up to this many columns of B the direct kernel runs: A is read once
// either way, and a 64-column block tile would multiply mostly zero columns.
constexpr int64_t kNm24DirectMaxCols = 16;

// The problem as the tiling sees it. Element counts, not bytes.
struct TileProblem {
  int64_t rows;          // of A (multiple of 16)
  int64_t k;             // logical columns of A = rows of B (multiple of kBlockK)
  int64_t n;             // columns of B
  int64_t b_col_stride;  // elements between columns of B (multiple of 8)
};

// One 16-byte copy: destination word in the stage, source element (values of
// A, elements of B, words of metadata), and whether it lies inside the
// matrix (if not, the kernel zero-fills the chunk and reads nothing).
struct ChunkCopy {
  int smem_word;
  int64_t src;
  bool valid;
};

SPARSECORE_HD static inline int64_t k_stages(const TileProblem& p) { return p.k / TileCfg::kBlockK; }
SPARSECORE_HD static inline int64_t tile_grid_x(const TileProblem& p) { return (p.rows + TileCfg::kBlockM - 1) / TileCfg::kBlockM; }
SPARSECORE_HD static inline int64_t tile_grid_y(const TileProblem& p) { return (p.n + TileCfg::kBlockN - 1) / TileCfg::kBlockN; }

// Chunk i (0 .. kAChunksPerThread) of thread tid: compressed values of A,
// source index in 16-bit elements of the (rows x k / 2) value array.
SPARSECORE_HD static inline ChunkCopy a_chunk(const TileProblem& p, int64_t bx, int64_t kt, int tid, int i) {
  const int c = tid + i * TileCfg::kThreads;
  const int row = c / (TileCfg::kARowWords / 4), part = c % (TileCfg::kARowWords / 4);
  const int64_t m = bx * TileCfg::kBlockM + row;
  return {TileCfg::kAOffset + row * TileCfg::kARowStride + 4 * part,
          m * (p.k / 2) + kt * (TileCfg::kBlockK / 2) + 8 * part, m < p.rows};
}

// Chunk i (0 .. kBChunksPerThread) of thread tid: 8 consecutive k of one
// column of B, source index in elements of B.
SPARSECORE_HD static inline ChunkCopy b_chunk(const TileProblem& p, int64_t by, int64_t kt, int tid, int i) {
  const int c = tid + i * TileCfg::kThreads;
  const int col = c / (TileCfg::kBRowWords / 4), part = c % (TileCfg::kBRowWords / 4);
  const int64_t n = by * TileCfg::kBlockN + col;
  return {TileCfg::kBOffset + col * TileCfg::kBRowStride + 4 * part,
          n * p.b_col_stride + kt * TileCfg::kBlockK + 8 * part, n < p.n};
}

// Metadata chunk of thread tid (threads tid < kMetaChunks copy one): the
// words of the stage's two 16 x 32 tiles of one row tile are consecutive in
// the packed metadata (metadata_index), 8 chunks per row tile. A row tile
// past the end of the matrix (a partial block) copies the last real row
// tile's metadata instead of zeros: nibble 0000 is not a valid
// ::ordered_metadata index pair (the PTX ISA allows only 0100, 1000, 1001,
// 1100, 1101, 1110), so zero-filled metadata would make the instruction's
// result undefined. Those rows' A values are zero-filled and their outputs
// dropped, so any valid metadata gives the same result. (rows >= 16.)
SPARSECORE_HD static inline ChunkCopy meta_chunk(const TileProblem& p, int64_t bx, int64_t kt, int tid) {
  constexpr int kPerRowTile = TileCfg::kKSteps * kMetaWords / 4;
  const int rt = tid / kPerRowTile, part = tid % kPerRowTile;
  const int64_t last = p.rows / kTileM - 1;
  int64_t tm = bx * (TileCfg::kBlockM / kTileM) + rt;
  tm = tm < last ? tm : last;
  const int64_t k_tiles = p.k / kTileK;
  return {TileCfg::kMetaOffset + rt * TileCfg::kKSteps * kMetaWords + 4 * part,
          (tm * k_tiles + kt * TileCfg::kKSteps) * kMetaWords + 4 * part, true};
}

// Warp w's place in the 2 x 2 warp grid.
SPARSECORE_HD static inline int warp_m(int warp) { return warp / TileCfg::kWarpsN; }
SPARSECORE_HD static inline int warp_n(int warp) { return warp % TileCfg::kWarpsN; }

// Stage word of A register `reg` of `lane` for the warp's row tile i and k step s.
SPARSECORE_HD static inline int a_smem_word(int warp, int i, int s, int lane, int reg) {
  const Coord e = a_fragment(lane, reg, 0);  // (row, compressed column), columns in pairs
  const int row = warp_m(warp) * (TileCfg::kWarpTilesM * kTileM) + i * kTileM + e.row;
  return TileCfg::kAOffset + row * TileCfg::kARowStride + s * (kTileK / 4) + e.col / 2;
}

// Stage word of B register `reg` of `lane` for the warp's column tile j and k step s.
SPARSECORE_HD static inline int b_smem_word(int warp, int j, int s, int lane, int reg) {
  const Coord e = b_fragment(lane, reg, 0);  // (k, n), k in pairs
  const int col = warp_n(warp) * (TileCfg::kWarpTilesN * kTileN) + j * kTileN + e.col;
  return TileCfg::kBOffset + col * TileCfg::kBRowStride + (s * kTileK + e.row) / 2;
}

// Stage word of the metadata of `lane` (holds_metadata lanes) for row tile i, k step s.
SPARSECORE_HD static inline int meta_smem_word(int warp, int i, int s, int lane) {
  const int rt = warp_m(warp) * TileCfg::kWarpTilesM + i;
  return TileCfg::kMetaOffset + (rt * TileCfg::kKSteps + s) * kMetaWords + 2 * (lane >> 2) + (lane & 1);
}

// Output (row of C, column of C) of accumulator e (0..3) of `lane` for the
// warp's row tile i and column tile j in block (bx, by).
struct Out2 {
  int64_t m;
  int64_t n;
};
SPARSECORE_HD static inline Out2 tile_output(int64_t bx, int64_t by, int warp, int i, int j, int lane, int e) {
  const Coord c = c_fragment(lane, e);
  return {bx * TileCfg::kBlockM + warp_m(warp) * (TileCfg::kWarpTilesM * kTileM) + i * kTileM + c.row,
          by * TileCfg::kBlockN + warp_n(warp) * (TileCfg::kWarpTilesN * kTileN) + j * kTileN + c.col};
}

}  // namespace sparsecore::cuda::nm24

// Work assignment of the CUDA CSR SpMM kernel, as host/device functions so the
// CPU tests can check that every nonzero and every output is covered exactly
// once for any shape.
#pragma once
#include <cstdint>

#include "sparsecore/macros.h"

namespace sparsecore::cuda {

// Tile choices, with the reason for each value.
struct CsrSpmmConfig {
  // 4 warps per block: enough resident warps to hide gather latency on sm_80
  // and sm_90 while keeping blocks small for short matrices.
  static constexpr int kWarpsPerBlock = 4;
  static constexpr int kWarpSize = 32;
  static constexpr int kThreads = kWarpsPerBlock * kWarpSize;
  // Each lane owns 4 consecutive output columns (a float4 of B when B is fp32
  // and contiguous), so a warp covers 128 columns per pass.
  static constexpr int kColsPerLane = 4;
  static constexpr int kColsPerWarp = kWarpSize * kColsPerLane;
  // Multi-column GEMV: a warp splits its row's nonzeros over the lanes (as the
  // GEMV does) and each lane keeps 8 sums, one per column of its column tile.
  // 8 fp32 accumulators stay in registers; the row's nonzeros are read once per
  // 8 columns. Used for n <= kGemvMaxCols, and up to kGemvStridedMaxCols when
  // B's columns are k-contiguous (x @ W.T reads x^T): the SpMM kernel's lanes
  // own columns, which there are K elements apart, so each nonzero costs 4
  // scattered loads a lane with 28 of 32 lanes idle at n = 16 (1.5 ms on an
  // H200 for a 4096 x 4096 layer at n = 16, against 7 us for cuBLAS).
  static constexpr int kGemvCols = 8;
  static constexpr int kGemvMaxCols = 16;
  static constexpr int kGemvStridedMaxCols = 64;
};
static_assert(CsrSpmmConfig::kGemvCols <= CsrSpmmConfig::kWarpSize, "lane c writes column c of the tile");
static_assert(CsrSpmmConfig::kThreads <= 1024, "block too large");
static_assert(CsrSpmmConfig::kColsPerLane == 4, "vectorised B loads assume float4");

// Warp w of block b works on row b * warps_per_block + w (may be >= rows).
SPARSECORE_HD static inline int64_t csr_row_of_warp(int64_t block, int warp, int warps_per_block) {
  return block * warps_per_block + warp;
}

SPARSECORE_HD static inline int64_t csr_grid_rows(int64_t rows, int warps_per_block) {
  return (rows + warps_per_block - 1) / warps_per_block;
}

// GEMV: lane reads nonzeros p0 + lane, p0 + lane + 32, ... of its warp's row.
// Returns the index of the lane's element in step `step`, or -1 past the end.
SPARSECORE_HD static inline int64_t csr_gemv_element(int64_t p0, int64_t p1, int lane, int64_t step) {
  const int64_t p = p0 + step * CsrSpmmConfig::kWarpSize + lane;
  return p < p1 ? p : -1;
}

SPARSECORE_HD static inline int64_t csr_gemv_steps(int64_t p0, int64_t p1) {
  return (p1 - p0 + CsrSpmmConfig::kWarpSize - 1) / CsrSpmmConfig::kWarpSize;
}

// Whether the multi-column GEMV runs for n > 1 columns of B whose rows are
// row_stride elements apart (row_stride == 1: k-contiguous columns).
SPARSECORE_HD static inline bool csr_use_gemv_n(int64_t n, int64_t row_stride) {
  return n > 1 && (n <= CsrSpmmConfig::kGemvMaxCols || (row_stride == 1 && n <= CsrSpmmConfig::kGemvStridedMaxCols));
}

// Multi-column GEMV: grid.y tile t covers columns [t * 8, t * 8 + 8) (those < n).
SPARSECORE_HD static inline int64_t csr_gemv_n_tiles(int64_t n) {
  return (n + CsrSpmmConfig::kGemvCols - 1) / CsrSpmmConfig::kGemvCols;
}

// SpMM: grid.y tile t covers columns [t * 128, t * 128 + 128); the lane owns
// the 4 columns returned by first column + 0..3 (those < n).
SPARSECORE_HD static inline int64_t csr_spmm_first_col(int64_t tile, int lane) {
  return tile * CsrSpmmConfig::kColsPerWarp + int64_t(lane) * CsrSpmmConfig::kColsPerLane;
}

SPARSECORE_HD static inline int64_t csr_grid_col_tiles(int64_t n) {
  return (n + CsrSpmmConfig::kColsPerWarp - 1) / CsrSpmmConfig::kColsPerWarp;
}

}  // namespace sparsecore::cuda

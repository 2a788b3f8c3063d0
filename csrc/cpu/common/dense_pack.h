// The dense operand of every CPU sparse x dense kernel, packed once per call,
// and the per-call output description. Shared by the CSR/BSR and N:M
// families; baseline code (no -m flags), plain structs and functions only.
#pragma once
#include <cstdint>

#include "sparsecore/core.h"

namespace sparsecore::cpu {

// The dense operand B (k x n) after packing: fp32, cut into column tiles of
// `tile` columns. Element (r, j) lives at
//   data[(j / tile) * tile_stride + r * tile + j % tile].
// Each tile has one extra zero row at r = k, zero columns past n, and at
// least 16 zero floats at its end, so full-width vector loads never need a
// mask. tile is 1 (a column per tile: the GEMV and the bitmap kernels read x
// contiguously) or a multiple of 16 up to 64 (the SpMM kernels: a tile of B
// rows is one cache-friendly panel).
struct PackedDense {
  const float* data = nullptr;
  int64_t rows = 0;  // k = A.cols
  int64_t n = 0;     // real columns
  int64_t tile = 1;
  int64_t tile_stride = 0;
  // Columns of B holding a NaN or Inf (column j of C then becomes NaN: the
  // rule of every sparsecore matmul); null when B is finite.
  const uint8_t* nonfinite = nullptr;
};
static inline const float* tile_data(const PackedDense& b, int64_t t) { return b.data + t * b.tile_stride; }

// Widest B tile of the SpMM kernels: 64 fp32 columns = 8 AVX2 / 4 AVX-512
// accumulators per row of C.
constexpr int64_t kSpmmTileCols = 64;

struct SpmmOutput {
  MatrixView c;
  const float* bias = nullptr;  // fp32, A.rows entries, or null
};

// How far ahead of their value loads the memory-bound decode GEMVs (CSR
// bitmap, N:M; at most 2 columns of B) prefetch. The hardware prefetcher
// stops at every 4 KiB page and restarts slowly; 2 KiB ahead keeps the
// stream going across the boundary (N:M 11008 x 4096, N = 1, 2 threads:
// bf16 2.6 -> 2.0 ms, fp32 4.5 -> 3.4 ms).
constexpr int64_t kDecodePrefetchBytes = 2048;

// Scratch owned by the calling thread.
float* thread_scratch(int64_t floats);

// Below this many multiply-adds a call runs on one thread: waking the pool
// costs more than it saves.
constexpr int64_t kMinParallelWork = 1 << 15;

// Sizes and strides non-negative, data present when non-empty.
bool matrix_view_ok(const MatrixView& m);

// Packs B into a per-thread buffer with `tile` columns per tile (see
// PackedDense), recording the columns that hold NaN or Inf. Non-finite
// values are packed as zeros, so no kernel multiplies them (a stored zero
// times Inf would make some entries NaN and others not); poison_columns then
// writes the rule's NaNs. Fails only when memory runs out.
Status pack_dense(const MatrixView& b, int64_t tile, bool parallel, PackedDense* out);

// C = bias[row] broadcast (0 without a bias): the whole product of a matrix
// with no columns (k = 0), which no kernel loop would write.
void store_bias_only(const MatrixView& c, const float* bias);

// Column j of C (rows x n) becomes NaN for every column j that
// b.nonfinite marks.
void poison_columns(const PackedDense& b, const MatrixView& c);


// Tile width for the SpMM kernels: whole 16-float vectors, at most
// kSpmmTileCols columns.
int64_t spmm_tile(int64_t n);

// Bias converted to fp32 in a per-thread buffer; *out is null when there is
// no bias. (A NaN bias entry makes its row of C NaN, as in dense arithmetic.)
Status convert_bias(const Epilogue& ep, int64_t rows, const float** out);

}  // namespace sparsecore::cpu


// Internal interface between the baseline dispatcher (spmm.cc) and the
// per-ISA kernel translation units. Plain structs and functions only.
#pragma once
#include <cstdint>

#include "sparsecore/views.h"

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
  const float* tile_data(int64_t t) const { return data + t * tile_stride; }
};

// Widest B tile of the SpMM kernels: 64 fp32 columns = 8 AVX2 / 4 AVX-512
// accumulators per row of C.
constexpr int64_t kSpmmTileCols = 64;

// Scratch owned by the calling thread (defined in the baseline TU).
float* thread_scratch(int64_t floats);

struct SpmmOutput {
  MatrixView c;
  const float* bias = nullptr;  // fp32, A.rows entries, or null
};

#define SPARSECORE_DECLARE_SPMM_ISA(ns)                                                        \
  namespace ns {                                                                               \
  void csr_rows(const CsrView& a, const PackedDense& b, const SpmmOutput& out, int64_t begin,  \
                int64_t end);                                                                  \
  void bsr_rows(const BsrView& a, const PackedDense& b, const SpmmOutput& out, int64_t begin,   \
                int64_t end);                                                                  \
  }

SPARSECORE_DECLARE_SPMM_ISA(scalar)
SPARSECORE_DECLARE_SPMM_ISA(avx2)
SPARSECORE_DECLARE_SPMM_ISA(avx512)
SPARSECORE_DECLARE_SPMM_ISA(avx512_simde)

#undef SPARSECORE_DECLARE_SPMM_ISA

}  // namespace sparsecore::cpu

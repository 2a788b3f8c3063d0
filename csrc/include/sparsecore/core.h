// What every kernel family shares: status codes, element types, the strided
// dense matrix view, the bias epilogue, the bitmap row layout and what the
// build knows about CUDA. No ownership, no torch, no pybind11.
//
// Every function defined in a sparsecore header is `static inline`: the
// per-ISA translation units (compiled with -mavx512f and friends) include
// these headers, and an external-linkage inline copy compiled there could be
// the one the linker keeps for every caller (then an AVX2-only CPU dies with
// SIGILL). Internal linkage gives each TU its own copy. For the same reason
// the shared structs have no member functions.
#pragma once
#include <cstdint>

#include "sparsecore/dtypes.h"
#include "sparsecore/status.h"

namespace sparsecore {

// A strided 2-D matrix. Strides are in elements and may be anything >= 0
// (a transposed view is just swapped strides).
struct MatrixView {
  void* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t row_stride = 0;
  int64_t col_stride = 1;
  DType dtype = DType::kFloat32;
};

// bias may be null; otherwise bias has one element per row of A, of bias_dtype.
struct Epilogue {
  const void* bias = nullptr;
  DType bias_dtype = DType::kFloat32;
};

// Bytes per bitmap row (the CSR plan and N:M): whole 16-column groups (the
// AVX-512 step), zero padded. Bit l of byte q is column 8q + l.
SPARSECORE_HD static inline int64_t bitmap_row_bytes(int64_t cols) { return (cols + 15) / 16 * 2; }

// The one bit layout of every bitmap (CSR plan, N:M, weight-sparse runs, the
// files): bit c of a row is bit c % 8 of byte c / 8.
SPARSECORE_HD static inline bool bit_at(const uint8_t* row, int64_t c) { return (row[c >> 3] >> (c & 7)) & 1u; }
SPARSECORE_HD static inline void set_bit(uint8_t* row, int64_t c) { row[c >> 3] = uint8_t(row[c >> 3] | (1u << (c & 7))); }

// CUDA: whether this build has the kernels, for which architectures, how
// many devices the driver reports, and whether `device` can run them (compute
// capability 8.0 or newer; otherwise error_detail() says what it has).
bool cuda_compiled();
const char* cuda_archs_compiled();
int cuda_device_count();
bool cuda_device_supported(int device);

}  // namespace sparsecore

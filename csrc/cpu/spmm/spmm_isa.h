// Internal interface between the baseline dispatcher (spmm.cc) and the
// per-ISA kernel translation units. Plain structs and functions only.
#pragma once
#include <cstdint>

#include "sparsecore/views.h"

namespace sparsecore::cpu {

// The dense operand after packing: fp32, row-major, ld a multiple of 16 with
// zero padding, so full-width vector loads never need a mask.
struct PackedDense {
  const float* data = nullptr;
  int64_t rows = 0;  // = A.cols
  int64_t n = 0;     // real columns
  int64_t ld = 0;    // padded row length
};

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

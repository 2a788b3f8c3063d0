// Internal interface between the baseline dispatcher (spmm.cc) and the
// per-ISA kernel translation units. Plain structs and functions only. The
// row-range functions return false when index or bitmap contents they were
// about to use point outside the matrix.
#pragma once
#include <cstdint>

#include "../common/dense_pack.h"
#include "sparsecore/spmm.h"

namespace sparsecore::cpu {

#define SPARSECORE_DECLARE_SPMM_ISA(ns)                                                        \
  namespace ns {                                                                               \
  bool csr_rows(const CsrView& a, const PackedDense& b, const SpmmOutput& out, int64_t begin,  \
                int64_t end);                                                                  \
  bool bsr_rows(const BsrView& a, const PackedDense& b, const SpmmOutput& out, int64_t begin,   \
                int64_t end);                                                                  \
  }

SPARSECORE_DECLARE_SPMM_ISA(scalar)
SPARSECORE_DECLARE_SPMM_ISA(avx2)
SPARSECORE_DECLARE_SPMM_ISA(avx512)
SPARSECORE_DECLARE_SPMM_ISA(avx512_simde)

#undef SPARSECORE_DECLARE_SPMM_ISA

}  // namespace sparsecore::cpu

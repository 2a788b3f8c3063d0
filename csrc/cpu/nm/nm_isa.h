// Internal interface between the N:M dispatcher (nm.cc) and its per-ISA
// kernel translation units. Plain structs and functions only.
#pragma once
#include <cstdint>

#include "../common/dense_pack.h"
#include "sparsecore/nm.h"

namespace sparsecore::cpu {

#define SPARSECORE_DECLARE_NM_ISA(ns)                                                        \
  namespace ns {                                                                             \
  bool nm_rows(const NmView& a, const PackedDense& b, const SpmmOutput& out, int64_t begin, \
               int64_t end);                                                                 \
  }

SPARSECORE_DECLARE_NM_ISA(scalar)
SPARSECORE_DECLARE_NM_ISA(avx2)
SPARSECORE_DECLARE_NM_ISA(avx512)
SPARSECORE_DECLARE_NM_ISA(avx512_simde)

#undef SPARSECORE_DECLARE_NM_ISA

// Columns of B up to which the decode kernel runs (one pass over the weight
// for all of them); wider B goes to the panel kernel.
constexpr int64_t kNmMaxDecodeCols = 8;

}  // namespace sparsecore::cpu

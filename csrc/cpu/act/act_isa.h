// Internal interface between the activation-sparse dispatcher (act.cc) and
// its per-ISA kernel translation units. Plain structs and functions only.
#pragma once
#include <cstdint>

#include "sparsecore/act_layout.h"
#include "sparsecore/views.h"

namespace sparsecore::cpu {

// Rows of x that share one channel list in union mode.
constexpr int kActUnionRows = 2;
// Outputs per pass: the partial sums of a pass (rows x kActOutChunk fp32)
// stay in L1 while the runs of the listed channels stream through.
constexpr int64_t kActOutChunk = 2048;
static_assert(kActOutChunk % kActOffsetStride == 0, "passes start where runs have value offsets");
// Channels per pass: their pieces of the runs (at most 256 x 1 KiB bf16)
// stay in L2 while every row group reads them.
constexpr int64_t kActChunk = 256;
// How many channels ahead in a list the kernels prefetch the start of a run;
// the dispatcher pads every list with this many readable entries.
constexpr int kActPrefetchAhead = 8;

// The selected channels of x, built once per call by the dispatcher. Rows are
// taken group_rows at a time (1: each row its own list; kActUnionRows: the
// union of the group's lists). Group g covers rows [g * group_rows, ...),
// lists channels idx[group_ptr[g] .. group_ptr[g + 1]) in ascending order,
// and vals holds group_rows fp32 inputs per listed channel (row-interleaved;
// zero for a row in which that channel is not selected, and for padding rows).
struct ActGroups {
  int64_t rows = 0;
  int group_rows = 1;
  int64_t groups = 0;
  const int64_t* group_ptr = nullptr;
  const int32_t* idx = nullptr;
  const float* vals = nullptr;
};

#define SPARSECORE_DECLARE_ACT_ISA(ns)                                                               \
  namespace ns {                                                                                     \
  void act_outputs(const ActWeightView& w, const ActGroups& g, const float* bias, const MatrixView& y, \
                   int64_t o_begin, int64_t o_end);                                              \
  }

SPARSECORE_DECLARE_ACT_ISA(scalar)
SPARSECORE_DECLARE_ACT_ISA(avx2)
SPARSECORE_DECLARE_ACT_ISA(avx512)
SPARSECORE_DECLARE_ACT_ISA(avx512_simde)

#undef SPARSECORE_DECLARE_ACT_ISA

}  // namespace sparsecore::cpu

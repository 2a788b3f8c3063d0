// Internal interface between the activation-sparse dispatcher (act.cc) and
// its per-ISA kernel translation units. Plain structs and functions only.
#pragma once
#include <cstdint>

#include "sparsecore/act_layout.h"
#include "sparsecore/act.h"

namespace sparsecore::cpu {

// Rows of x that share one channel list in union mode.
constexpr int kActUnionRows = 2;
// Outputs per pass: at most kActOutChunk, fewer when many row groups would
// push the partial sums of a pass (rows x width fp32) past kActPartBytes; they
// stay in cache while the runs of the listed channels stream through.
constexpr int64_t kActOutChunk = 2048;
constexpr int64_t kActPartBytes = 128 * 1024;
static_assert(kActOutChunk % kActOffsetStride == 0, "passes start where runs have value offsets");
// With several row groups, a pass walks the channels in chunks whose pieces
// of the runs (chunk x pass width x value size) fit this L2 budget, so that
// every group after the first reads them from L2, not DRAM. One group (decode)
// walks all channels in one go.
constexpr int64_t kActChunkBytes = 192 * 1024;
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
  bool act_outputs(const ActWeightView& w, const ActGroups& g, const float* bias, const MatrixView& y, \
                   int64_t o_begin, int64_t o_end);                                              \
  }

SPARSECORE_DECLARE_ACT_ISA(scalar)
SPARSECORE_DECLARE_ACT_ISA(avx2)
SPARSECORE_DECLARE_ACT_ISA(avx512)
SPARSECORE_DECLARE_ACT_ISA(avx512_simde)

#undef SPARSECORE_DECLARE_ACT_ISA

}  // namespace sparsecore::cpu

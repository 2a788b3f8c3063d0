// Activation-sparse linear layers: the weight layout and the selection rule,
// shared by the CPU kernels, the CUDA kernel, the packing code and the tests.
//
// y = (x * m) @ W.T skips the weight columns W[:, j] of the inactive inputs,
// so the layout keeps each column contiguous: W (out x in) is stored
// transposed, one row of out_padded values per input channel, zero past out:
//   packed[j * out_padded + o] = W[o, j],  out_padded = out rounded up to 32.
// An inactive channel skips a whole run of out_padded values (8 KiB for a
// 4096-wide bf16 layer): far enough that the hardware prefetchers, which stay
// inside a 4 KiB page, do not fetch it anyway (with 64-byte runs they stream
// the whole weight and skipping saves nothing). An active channel is a long
// sequential read. A CUDA warp reads 32 consecutive outputs of a run: one
// coalesced transaction; the CPU kernels read 64-byte aligned vectors.
#pragma once
#include <cstdint>

#include "sparsecore/macros.h"

namespace sparsecore {

constexpr int kActTile = 32;

SPARSECORE_HD static inline int64_t act_out_padded(int64_t out) { return (out + kActTile - 1) / kActTile * kActTile; }

SPARSECORE_HD static inline int64_t act_tiles(int64_t out) { return act_out_padded(out) / kActTile; }

SPARSECORE_HD static inline int64_t act_packed_elements(int64_t out, int64_t in) { return in * act_out_padded(out); }

SPARSECORE_HD static inline int64_t act_packed_offset(int64_t o, int64_t j, int64_t out) {
  return j * act_out_padded(out) + o;
}

// Weight-sparse runs (ActWeightView::bitmap): the bitmap rows and the value
// offsets every kActOffsetStride outputs, so that a pass over any range of
// outputs that starts at a multiple of kActOffsetStride finds its values
// without counting bits. The arrays are padded so that whole-vector reads at
// the end of a run stay inside (kActValuePad values, 2 bitmap bytes). The value
// padding covers one whole offset stride, so a piece read against a corrupted
// bitmap stays inside before the kernel sees that it ends at the wrong offset.
constexpr int64_t kActOffsetStride = 256;
constexpr int64_t kActValuePad = kActOffsetStride + 16;

SPARSECORE_HD static inline int64_t act_bitmap_row_bytes(int64_t out) { return act_out_padded(out) / 8; }

SPARSECORE_HD static inline int64_t act_offset_slots(int64_t out) {
  return (act_out_padded(out) + kActOffsetStride - 1) / kActOffsetStride;
}

// Channel j of an input row is active when its score |x_j| * scale_j exceeds
// the threshold (scale_j = 1 without a scale: TEAL; ||W[:, j]||_2: WINA and
// R-Sparse). complement selects the other channels (R-Sparse's low-rank
// path). A NaN or Inf input is always active on the main path, so it reaches
// the output instead of being dropped as if it were small.
SPARSECORE_HD static inline bool act_selected(float x, float scale, float threshold, bool complement) {
  const float score = (x < 0.f ? -x : x) * scale;
  const bool big = !(score <= threshold) || !(x - x == 0.f);  // NaN compares false; Inf - Inf is NaN
  return complement ? !big : big;
}

// The CUDA kernel's schedule: a block of kActCudaWarps warps owns that many
// tiles of kActTile outputs (a warp per tile, a lane per output feature) of one row of x, over
// one chunk of kActCudaChunk input channels; its partial sums are added into
// an fp32 workspace. Splitting the channels keeps enough blocks in flight for
// decode (one row) on a GPU with a hundred SMs.
constexpr int kActCudaWarps = 4;
constexpr int kActCudaChunk = 256;

struct ActCudaGrid {
  int64_t tile_blocks;   // grid.x
  int64_t rows;          // grid.y
  int64_t chunks;        // grid.z
};

SPARSECORE_HD static inline ActCudaGrid act_cuda_grid(int64_t out, int64_t in, int64_t rows) {
  return {(act_tiles(out) + kActCudaWarps - 1) / kActCudaWarps, rows, (in + kActCudaChunk - 1) / kActCudaChunk};
}

}  // namespace sparsecore

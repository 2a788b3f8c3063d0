// Host-side packing of 2:4 metadata into the mma.sp register order, done once
// when a 2:4 weight moves to the GPU. Compiled in every build (no CUDA
// needed), so the CPU tests exercise the same code the GPU path uses.
#include "nm24_fragments.h"
#include "sparsecore/nm.h"

namespace sparsecore {

int64_t nm24_metadata_words(int64_t rows, int64_t cols) {
  return rows / cuda::nm24::kTileM * (cols / cuda::nm24::kTileK) * cuda::nm24::kMetaWords;
}

Status nm24_pack_metadata(const uint8_t* bitmap, int64_t rows, int64_t cols, uint32_t* metadata) {
  using namespace cuda::nm24;
  if (rows < 0 || cols < 0 || rows % kTileM || cols % kTileK) return Status::kInvalidArgument;
  if (rows > 0 && cols > 0 && (bitmap == nullptr || metadata == nullptr)) return Status::kInvalidArgument;
  const int64_t stride = bitmap_row_bytes(cols);
  const int64_t k_tiles = cols / kTileK;
  uint8_t nibbles[kTileM * kChunks];
  for (int64_t tm = 0; tm < rows / kTileM; ++tm)
    for (int64_t tk = 0; tk < k_tiles; ++tk) {
      for (int r = 0; r < kTileM; ++r)
        for (int c = 0; c < kChunks; ++c) {
          const int64_t col = tk * kTileK + 4 * c;  // 4-aligned: one nibble of one byte
          const unsigned byte = bitmap[(tm * kTileM + r) * stride + (col >> 3)];
          const uint8_t nib = chunk_nibble((byte >> (col & 7)) & 0xfu);
          if (nib == 0xff) return Status::kInvalidArgument;
          nibbles[r * kChunks + c] = nib;
        }
      for (int lane = 0; lane < 32; ++lane)
        if (holds_metadata(lane)) metadata[metadata_index(tm, tk, k_tiles, lane)] = metadata_word(nibbles, lane);
    }
  return Status::kOk;
}

}  // namespace sparsecore

// 2:4 on sparse tensor cores: the element <-> register mapping of
//   mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32.{bf16,f16}.{bf16,f16}.f32
// and the metadata layout, as host/device functions. The CUDA kernel uses
// them to address its loads; the CPU tests check them against a software
// emulation of the instruction, bit-exact with small integer inputs; the
// host packs the metadata with them once, at construction (as CUTLASS
// reorders metadata on the host).
//
// The instruction computes D[16x8] = A[16x32] B[32x8] + C, where A is 2:4
// sparse along k: each row keeps 2 of every 4 columns ("chunk"), so A is
// passed compressed (16x16 values) plus 2-bit indices. From the PTX ISA
// (sparse mma, .m16n8k32 with .f16/.bf16), with g = lane / 4, t = lane % 4:
//  - compressed A: 4 .b32 registers, each 2 consecutive values, laid out like
//    the dense m16n8k16 A fragment: reg 0 = (row g, cols 2t..2t+1), reg 1 =
//    (row g+8, same cols), reg 2 = (row g, cols 2t+8..), reg 3 = (row g+8, ..).
//    Compressed column c belongs to chunk c / 2 (logical k = 4 * (c / 2) + idx).
//  - B (32x8): 4 .b32 registers; reg j holds rows k = 2t + 8j and 2t + 8j + 1
//    of column n = g (two dense m16n8k16 B fragments, k 0..15 then 16..31).
//  - C/D (16x8 f32): elements 0,1 = (row g, cols 2t, 2t+1); 2,3 = row g+8.
//  - metadata: one .b32 per lane; with sparsity selector 0 lanes with t = 0
//    and t = 1 supply it: bits 0..15 for row g, bits 16..31 for row g+8,
//    chunks 4t..4t+3 (4 bits each, lowest chunk lowest); in a chunk's nibble
//    bits 0..1 index the first kept column, bits 2..3 the second, first < second
//    (::ordered_metadata).
#pragma once
#include <cstdint>

#include "sparsecore/macros.h"

namespace sparsecore::cuda::nm24 {

constexpr int kTileM = 16;      // rows of A per instruction
constexpr int kTileN = 8;       // columns of B per instruction
constexpr int kTileK = 32;      // logical k per instruction (16 stored values per row)
constexpr int kChunks = kTileK / 4;
constexpr int kMetaWords = 16;  // metadata words per 16 x 32 tile: 8 groups x (t = 0, 1)

struct Coord {
  int row;
  int col;
};

// Compressed A element `half` (0, 1) of register `reg` (0..3) of `lane`:
// (row 0..15, compressed column 0..15).
SPARSECORE_HD static inline Coord a_fragment(int lane, int reg, int half) {
  const int g = lane >> 2, t = lane & 3;
  return {g + 8 * (reg & 1), 2 * t + 8 * (reg >> 1) + half};
}

// B element `half` of register `reg` (0..3) of `lane`: (k 0..31, n 0..7).
SPARSECORE_HD static inline Coord b_fragment(int lane, int reg, int half) {
  const int g = lane >> 2, t = lane & 3;
  return {2 * t + 8 * reg + half, g};
}

// Accumulator element i (0..3) of `lane`: (row 0..15, n 0..7).
SPARSECORE_HD static inline Coord c_fragment(int lane, int i) {
  const int g = lane >> 2, t = lane & 3;
  return {g + 8 * (i >> 1), 2 * t + (i & 1)};
}

// Lanes that supply metadata with sparsity selector 0.
SPARSECORE_HD static inline bool holds_metadata(int lane) { return (lane & 3) < 2; }

// Nibble of one chunk from its 4-bit column mask (exactly two bits set):
// first kept column in bits 0..1, second in bits 2..3. Returns 0xff for a
// mask that is not 2:4.
SPARSECORE_HD static inline uint8_t chunk_nibble(unsigned mask4) {
  int first = -1, second = -1;
  for (int i = 0; i < 4; ++i) {
    if (!((mask4 >> i) & 1u)) continue;
    if (first < 0) first = i;
    else if (second < 0) second = i;
    else return 0xff;
  }
  if (second < 0) return 0xff;
  return uint8_t(first | (second << 2));
}

// The metadata word of `lane` for one 16 x 32 tile, given the nibbles of the
// tile's 16 rows x 8 chunks (nibbles[row * 8 + chunk]). Lanes that supply no
// metadata get 0 (never read by the instruction).
SPARSECORE_HD static inline uint32_t metadata_word(const uint8_t* nibbles, int lane) {
  if (!holds_metadata(lane)) return 0;
  const int g = lane >> 2, t = lane & 3;
  uint32_t w = 0;
  for (int j = 0; j < 4; ++j) {
    w |= uint32_t(nibbles[g * kChunks + 4 * t + j] & 0xf) << (4 * j);
    w |= uint32_t(nibbles[(g + 8) * kChunks + 4 * t + j] & 0xf) << (16 + 4 * j);
  }
  return w;
}

// Stored position of the metadata words: tile (tm, tk) of a matrix with
// k_tiles tiles along k holds kMetaWords consecutive words, word 2 * g + t for
// lane (g, t < 2), so one warp reads a tile's metadata as 64 contiguous bytes.
SPARSECORE_HD static inline int64_t metadata_index(int64_t tm, int64_t tk, int64_t k_tiles, int lane) {
  return (tm * k_tiles + tk) * kMetaWords + 2 * (lane >> 2) + (lane & 1);
}

// Launch shape of the direct kernel (few columns of B: decode). A block owns
// one 16-row tile of A and kNTiles 8-column tiles of B; its kWarps warps
// split k (warp w takes k tiles w, w + kWarps, ...: at any moment the warps
// read neighbouring tiles) and add their partial sums in shared memory at
// the end. Splitting k rather than rows gives a 4096-row weight 256 blocks
// of 4 warps instead of 64, enough loads in flight to stream the weight.
struct Nm24Config {
  static constexpr int kWarps = 4;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kNTiles = 4;  // 32 columns of B per block
  static constexpr int kBlockCols = kNTiles * kTileN;
};
static_assert(Nm24Config::kThreads <= 1024, "block too large");

// Block (bx, by) of the grid covers rows [bx * 16, +16) and columns
// [by * 32, +32); warp w multiplies k tiles first_k_tile(w), + kWarps, ...
SPARSECORE_HD static inline int64_t grid_x(int64_t rows) { return rows / kTileM; }
SPARSECORE_HD static inline int64_t grid_y(int64_t n) { return (n + Nm24Config::kBlockCols - 1) / Nm24Config::kBlockCols; }
SPARSECORE_HD static inline int64_t first_k_tile(int warp) { return warp; }
constexpr int64_t kKTileStep = Nm24Config::kWarps;

}  // namespace sparsecore::cuda::nm24

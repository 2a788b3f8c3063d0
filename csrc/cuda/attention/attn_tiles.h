// Flash attention on tensor cores: the addressing of every load and fragment,
// as host/device functions. The CUDA kernel uses them; the CPU test
// (tests/cpp/test_attn_fragments.cc) runs a whole warp's Q K^T and P V
// through them against an emulation of ldmatrix and mma.sync written from the
// PTX ISA, with shared memory poisoned with NaNs outside the tiles.
//
// From the PTX ISA, with g = lane / 4 and t = lane % 4:
//  - mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.{bf16,f16}.f32:
//    A (16 x 16): 4 .b32 registers of two consecutive elements each:
//      a0 = (row g, cols 2t, 2t+1), a1 = (row g+8, same), a2 = (row g, cols
//      2t+8, 2t+9), a3 = (row g+8, same); the lower column in the low half.
//    B (16 x 8): b0 = (rows k 2t, 2t+1, col n g), b1 = (rows k 2t+8, 2t+9, col g).
//    C/D (16 x 8 f32): c0, c1 = (row g, cols 2t, 2t+1), c2, c3 = (row g+8, same).
//  - ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16: lanes 8i..8i+7 give
//    the addresses of rows 0..7 of matrix i (16 bytes each); register i of
//    every lane receives matrix i: (row g, cols 2t, 2t+1) without .trans,
//    (rows 2t, 2t+1, col g) with .trans.
// The accumulator layout of S = Q K^T for keys 16s..16s+15 (n tiles 2s and
// 2s+1) is the A layout of P for the k step of those keys, so P goes from
// registers into the P V mma without shared memory (as FlashAttention-2).
#pragma once
#include <cstdint>

#include "sparsecore/macros.h"

namespace sparsecore::cuda::attn {

// Tile configuration for head dim D, with the reason for each value.
template <int D>
struct FaConfig {
  static_assert(D == 64 || D == 128 || D == 256, "head dims 64, 128 and 256 run on tensor cores");
  // 4 warps x 16 q rows: each warp owns one m16 row tile; the block shares
  // its K/V tiles between the warps.
  static constexpr int kWarps = 4;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kRows = kWarps * 16;
  // Keys per tile: 64 keep S at 32 fp32 registers a lane and O at D / 2;
  // at D = 256 the O accumulators (128 registers) leave room for 32 keys only.
  static constexpr int kKeys = D == 256 ? 32 : 64;
  static constexpr int kChunks = D / 8;  // 16-byte chunks per row
  // Shared memory (halfwords): Q tile, then two stages of K and V.
  static constexpr int kQElems = kRows * D;
  static constexpr int kKVElems = kKeys * D;
  static constexpr int kSmemBytes = (kQElems + 4 * kKVElems) * 2;
};
static_assert(FaConfig<128>::kSmemBytes <= 227 * 1024 && FaConfig<256>::kSmemBytes <= 163 * 1024,
              "fits sm_90 (227 KiB) and sm_80 (163 KiB) shared memory");

// Physical 16-byte chunk of logical chunk c of tile row r: XOR swizzle over
// 8 chunks, so the 8 rows one ldmatrix phase reads (same logical chunk,
// consecutive rows) fall in 8 different bank groups. Needs >= 8 chunks a row.
SPARSECORE_HD static inline int swizzle(int row, int chunk) { return chunk ^ (row & 7); }

// Halfword offset of (row, logical chunk) in a tile of `chunks` chunks a row.
SPARSECORE_HD static inline int tile_offset(int row, int chunk, int chunks) {
  return row * chunks * 8 + swizzle(row, chunk) * 8;
}

struct RowChunk {
  int row;
  int chunk;
};

// ldmatrix.x4 row address of `lane` for the A fragments (Q) of warp rows
// [row0, row0 + 16) at k step s (head dims 16s..16s+15): matrices (rows 0-7,
// d 0-7), (rows 8-15, d 0-7), (rows 0-7, d 8-15), (rows 8-15, d 8-15) give
// a0..a3.
SPARSECORE_HD static inline RowChunk q_ldmatrix(int lane, int row0, int s) {
  const int i = lane >> 3, r = lane & 7;
  return {row0 + (i & 1) * 8 + r, 2 * s + (i >> 1)};
}

// ldmatrix.x4 (no .trans) row address for the B fragments of S = Q K^T over
// keys 16p..16p+15 at k step s: matrices (keys 0-7, d 0-7), (keys 0-7, d
// 8-15), (keys 8-15, d 0-7), (keys 8-15, d 8-15) give b0, b1 of n tile 2p
// and b0, b1 of n tile 2p + 1.
SPARSECORE_HD static inline RowChunk k_ldmatrix(int lane, int p, int s) {
  const int i = lane >> 3, r = lane & 7;
  return {16 * p + (i >> 1) * 8 + r, 2 * s + (i & 1)};
}

// ldmatrix.x4.trans row address for the B fragments of O = P V at the k step
// of keys 16s..16s+15, head dims 16p..16p+15: matrices (keys 0-7, d 0-7),
// (keys 8-15, d 0-7), (keys 0-7, d 8-15), (keys 8-15, d 8-15) give b0, b1 of
// n tile 2p and b0, b1 of n tile 2p + 1.
SPARSECORE_HD static inline RowChunk v_ldmatrix(int lane, int s, int p) {
  const int i = lane >> 3, r = lane & 7;
  return {16 * s + (i & 1) * 8 + r, 2 * p + (i >> 1)};
}

// Row (0..15 within the warp's tile) of accumulator element e (0..3) of `lane`,
// and its column within the n tile.
SPARSECORE_HD static inline int c_row(int lane, int e) { return (lane >> 2) + 8 * (e >> 1); }
SPARSECORE_HD static inline int c_col(int lane, int e) { return 2 * (lane & 3) + (e & 1); }

// The packed q rows of a CUDA block: row r (0..kRows) holds q head
// h0 + r % nh at position pos0 + r / nh (heads of one KV head side by side,
// so GQA shares every K/V tile between them).
struct PackedRow {
  int head;  // offset from the block's first head
  int pos;   // offset from the block's first position
};
SPARSECORE_HD static inline PackedRow packed_row(int r, int nh) { return {r % nh, r / nh}; }

// Positions a CUDA block covers: the largest power of two with nh * P rows
// <= kRows that also divides the mask's q block (so a block never straddles
// two q blocks of a mask; block_q is a multiple of 16). block_q 0: no mask.
SPARSECORE_HD static inline int positions_per_block(int nh, int rows, int64_t block_q) {
  int p = 1;
  while (2 * p * nh <= rows) p *= 2;
  if (block_q > 0)
    while (block_q % p) p /= 2;
  return p;
}

// Split-KV: units (listed blocks, or key tiles) [u0, u1) of split z of `splits`.
SPARSECORE_HD static inline void split_range(int64_t units, int z, int splits, int64_t* u0, int64_t* u1) {
  *u0 = units * z / splits;
  *u1 = units * (z + 1) / splits;
}

}  // namespace sparsecore::cuda::attn

// The 2:4 tensor-core path checked on the CPU: the host metadata packing and
// the fragment addressing the CUDA kernel uses (nm24_fragments.h), run
// through a software emulation of mma.sp m16n8k32 written from the PTX ISA's
// description, must reproduce the dense product bit for bit on small
// integers. Also: the launch grid covers every output tile exactly once, and
// bad metadata is rejected.
#include <cstdint>
#include <random>
#include <vector>

#include <cstring>

#include "../../csrc/cuda/nm/nm24_fragments.h"
#include "../../csrc/cuda/nm/nm24_tiles.h"
#include "sparsecore/dtypes.h"
#include "random_24.h"
#include "sparsecore/act.h"
#include "sparsecore/nm.h"
#include "sparsecore/spmm.h"
#include "test_harness.h"

using namespace sparsecore;
using namespace sparsecore::cuda::nm24;
using namespace sparsecore::testing;

namespace {

// What one lane hands the instruction.
struct LaneRegs {
  float a[8];  // compressed A halves, register-major (reg * 2 + half)
  float b[8];
  uint32_t e;
};

// mma.sp.m16n8k32 (.f16/.bf16, selector 0) as the PTX ISA describes it,
// written independently of nm24_fragments.h: gather each operand from the
// lanes by the ISA's formulas, decode the metadata, multiply. Returns the
// number of invalid metadata nibbles: with ::ordered_metadata the PTX ISA
// allows only 0100, 1000, 1001, 1100, 1101 and 1110 (first index below the
// second); any other nibble (0000 from zero-filled shared memory, say) makes
// the instruction's result undefined, so every caller requires 0.
int emulate_mma_sp(const LaneRegs* lanes, double d[kTileM][kTileN]) {
  double a_c[kTileM][16] = {};
  double b[kTileK][kTileN] = {};
  uint32_t idx[kTileM][16] = {};
  for (int lane = 0; lane < 32; ++lane) {
    const int group = lane >> 2, tig = lane % 4;
    for (int i = 0; i < 8; ++i) {
      // A (as dense m16n8k16): row groupID for a0,a1,a4,a5, else +8;
      // col threadID_in_group*2 + (i & 1), +8 for i >= 4.
      const int arow = (i % 4 < 2) ? group : group + 8;
      const int acol = tig * 2 + (i & 1) + (i >= 4 ? 8 : 0);
      a_c[arow][acol] = lanes[lane].a[i];
      // B (m16n8k32): row threadID_in_group*2 + (i & 1) + 8 * (i / 2), col groupID.
      b[tig * 2 + (i & 1) + 8 * (i / 2)][group] = lanes[lane].b[i];
    }
    // Metadata: lanes 4g and 4g+1 (selector 0); lane 4g+t holds chunks 4t..4t+3
    // of row g in bits 0..15 and of row g+8 in bits 16..31, 2 bits per kept value.
    if (tig < 2) {
      for (int half = 0; half < 2; ++half)
        for (int v = 0; v < 8; ++v) {
          const int row = group + 8 * half;
          const int ccol = tig * 8 + v;  // compressed columns 8t..8t+7 = chunks 4t..4t+3
          idx[row][ccol] = (lanes[lane].e >> (16 * half + 2 * v)) & 3u;
        }
    }
  }
  int invalid = 0;
  for (int m = 0; m < kTileM; ++m)
    for (int c = 0; c < 16; c += 2) invalid += idx[m][c] >= idx[m][c + 1];
  for (int m = 0; m < kTileM; ++m)
    for (int n = 0; n < kTileN; ++n) {
      double s = 0;
      for (int c = 0; c < 16; ++c) s += a_c[m][c] * b[4 * (c / 2) + int(idx[m][c])][n];
      d[m][n] = s;
    }
  return invalid;
}

// The whole product through the emulated instruction, tile by tile, with
// operands addressed exactly as the kernel addresses them.
void test_product(int64_t rows, int64_t cols, int64_t n, std::mt19937& rng) {
  const Tile24 a = random_24(rows, cols, rng);
  std::uniform_int_distribution<int> val(-8, 8);
  std::vector<float> x(size_t(n * cols));  // x[n][k]: B = x^T
  for (float& v : x) v = float(val(rng));
  std::vector<uint32_t> meta(size_t(nm24_metadata_words(rows, cols)), 0xdeadbeefu);
  CHECK(nm24_pack_metadata(a.bitmap.data(), rows, cols, meta.data()) == Status::kOk, "pack %lldx%lld", (long long)rows, (long long)cols);
  const int64_t k_tiles = cols / kTileK;
  std::vector<double> y(size_t(rows * n), 0.0);
  int bad = 0;
  for (int64_t tm = 0; tm < rows / kTileM; ++tm)
    for (int64_t n0 = 0; n0 < n; n0 += kTileN) {
      double acc[kTileM][kTileN] = {};  // the warps' partial sums, added as the kernel adds them
      for (int w = 0; w < Nm24Config::kWarps; ++w) {
        for (int64_t tk = first_k_tile(w); tk < k_tiles; tk += kKTileStep) {
          LaneRegs lanes[32];
          for (int lane = 0; lane < 32; ++lane) {
            for (int reg = 0; reg < 4; ++reg)
              for (int half = 0; half < 2; ++half) {
                const Coord ea = a_fragment(lane, reg, half);
                lanes[lane].a[reg * 2 + half] =
                    a.values[size_t((tm * kTileM + ea.row) * (cols / 2) + tk * (kTileK / 2) + ea.col)];
                const Coord eb = b_fragment(lane, reg, half);
                const int64_t col = n0 + eb.col;
                lanes[lane].b[reg * 2 + half] = col < n ? x[size_t(col * cols + tk * kTileK + eb.row)] : 0.f;
              }
            lanes[lane].e = holds_metadata(lane) ? meta[size_t(metadata_index(tm, tk, k_tiles, lane))] : 0u;
          }
          double d[kTileM][kTileN];
          CHECK(emulate_mma_sp(lanes, d) == 0, "invalid metadata nibbles (tile %lld, %lld)", (long long)tm,
                (long long)tk);
          for (int m = 0; m < kTileM; ++m)
            for (int j = 0; j < kTileN; ++j) acc[m][j] += d[m][j];
        }
      }
      for (int lane = 0; lane < 32; ++lane)
        for (int i = 0; i < 4; ++i) {
          const Coord ec = c_fragment(lane, i);
          if (n0 + ec.col < n) y[size_t((tm * kTileM + ec.row) * n + n0 + ec.col)] += acc[ec.row][ec.col];
        }
    }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; ++j) {
      double want = 0;
      for (int64_t k = 0; k < cols; ++k) want += double(a.dense[size_t(r * cols + k)]) * x[size_t(j * cols + k)];
      if (y[size_t(r * n + j)] != want) ++bad;
    }
  CHECK(bad == 0, "%lldx%lld @ n=%lld: %d outputs differ from the dense product", (long long)rows, (long long)cols,
        (long long)n, bad);
}

// The tiled kernel, one thread block at a time, on the CPU: every thread's
// cp.async chunks copied into an emulated shared memory (zero-filled where
// the kernel zero-fills), every warp's registers read from it through the
// kernel's own addressing, the emulated instruction, the outputs placed by
// tile_output. Shared memory starts as bf16 NaNs, so a word no chunk wrote
// poisons the result. B columns lie b_col_stride apart (padding between).
void test_tiled_product(int64_t rows, int64_t k, int64_t n, int64_t b_col_stride, std::mt19937& rng) {
  const Tile24 a = random_24(rows, k, rng);
  std::vector<uint16_t> a_bits;
  for (float v : a.values) a_bits.push_back(float_to_bf16(v));
  std::vector<uint32_t> meta(size_t(nm24_metadata_words(rows, k)));
  CHECK(nm24_pack_metadata(a.bitmap.data(), rows, k, meta.data()) == Status::kOk, "pack");
  std::uniform_int_distribution<int> val(-8, 8);
  std::vector<float> x(size_t(n * b_col_stride), 0.f);  // column j of B at x[j * stride]
  std::vector<uint16_t> x_bits(x.size(), float_to_bf16(99.f));  // padding a chunk must never reach
  for (int64_t j = 0; j < n; ++j)
    for (int64_t kk = 0; kk < k; ++kk) {
      x[size_t(j * b_col_stride + kk)] = float(val(rng));
      x_bits[size_t(j * b_col_stride + kk)] = float_to_bf16(x[size_t(j * b_col_stride + kk)]);
    }
  const TileProblem p{rows, k, n, b_col_stride};
  std::vector<double> y(size_t(rows * n), 0.0);
  std::vector<int> written(size_t(rows * n), 0);
  std::vector<uint32_t> smem(size_t(TileCfg::kStages * TileCfg::kStageWords));
  const auto copy = [](uint32_t* dst, const void* src, bool valid) {
    if (valid) std::memcpy(dst, src, 16);
    else std::memset(dst, 0, 16);
  };
  const auto half = [](uint32_t w, int h) { return bf16_to_float(uint16_t(h ? w >> 16 : w & 0xffff)); };
  for (int64_t bx = 0; bx < tile_grid_x(p); ++bx)
    for (int64_t by = 0; by < tile_grid_y(p); ++by) {
      std::fill(smem.begin(), smem.end(), 0x7fc07fc0u);
      double acc[TileCfg::kWarpsM * TileCfg::kWarpsN][TileCfg::kWarpTilesM][TileCfg::kWarpTilesN][32][4] = {};
      for (int64_t kt = 0; kt < k_stages(p); ++kt) {
        uint32_t* stage = smem.data() + (kt % TileCfg::kStages) * TileCfg::kStageWords;
        for (int tid = 0; tid < TileCfg::kThreads; ++tid) {
          for (int i = 0; i < TileCfg::kAChunksPerThread; ++i) {
            const ChunkCopy c = a_chunk(p, bx, kt, tid, i);
            copy(stage + c.smem_word, c.valid ? a_bits.data() + c.src : nullptr, c.valid);
          }
          for (int i = 0; i < TileCfg::kBChunksPerThread; ++i) {
            const ChunkCopy c = b_chunk(p, by, kt, tid, i);
            copy(stage + c.smem_word, c.valid ? x_bits.data() + c.src : nullptr, c.valid);
          }
          if (tid < TileCfg::kMetaChunks) {
            const ChunkCopy c = meta_chunk(p, bx, kt, tid);
            copy(stage + c.smem_word, c.valid ? meta.data() + c.src : nullptr, c.valid);
          }
        }
        for (int warp = 0; warp < TileCfg::kWarpsM * TileCfg::kWarpsN; ++warp)
          for (int s = 0; s < TileCfg::kKSteps; ++s)
            for (int i = 0; i < TileCfg::kWarpTilesM; ++i)
              for (int j = 0; j < TileCfg::kWarpTilesN; ++j) {
                LaneRegs lanes[32];
                for (int lane = 0; lane < 32; ++lane) {
                  for (int r = 0; r < 4; ++r)
                    for (int h = 0; h < 2; ++h) {
                      lanes[lane].a[r * 2 + h] = half(stage[a_smem_word(warp, i, s, lane, r)], h);
                      lanes[lane].b[r * 2 + h] = half(stage[b_smem_word(warp, j, s, lane, r)], h);
                    }
                  lanes[lane].e = holds_metadata(lane) ? stage[meta_smem_word(warp, i, s, lane)] : 0u;
                }
                double d[kTileM][kTileN];
                // Partial row blocks included: their metadata must be valid too.
                CHECK(emulate_mma_sp(lanes, d) == 0, "invalid metadata nibbles (block %lld, stage %lld, warp %d)",
                      (long long)bx, (long long)kt, warp);
                for (int lane = 0; lane < 32; ++lane)
                  for (int e = 0; e < 4; ++e) {
                    const Coord c = c_fragment(lane, e);
                    acc[warp][i][j][lane][e] += d[c.row][c.col];
                  }
              }
      }
      for (int warp = 0; warp < TileCfg::kWarpsM * TileCfg::kWarpsN; ++warp)
        for (int i = 0; i < TileCfg::kWarpTilesM; ++i)
          for (int j = 0; j < TileCfg::kWarpTilesN; ++j)
            for (int lane = 0; lane < 32; ++lane)
              for (int e = 0; e < 4; ++e) {
                const Out2 o = tile_output(bx, by, warp, i, j, lane, e);
                if (o.m >= rows || o.n >= n) continue;
                y[size_t(o.m * n + o.n)] = acc[warp][i][j][lane][e];
                ++written[size_t(o.m * n + o.n)];
              }
    }
  int bad = 0, unwritten = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; ++j) {
      double want = 0;
      for (int64_t kk = 0; kk < k; ++kk) want += double(a.dense[size_t(r * k + kk)]) * x[size_t(j * b_col_stride + kk)];
      bad += y[size_t(r * n + j)] != want;
      unwritten += written[size_t(r * n + j)] != 1;
    }
  CHECK(bad == 0 && unwritten == 0, "tiled %lldx%lld @ n=%lld (stride %lld): %d outputs differ, %d not written once",
        (long long)rows, (long long)k, (long long)n, (long long)b_col_stride, bad, unwritten);
}

// Every fragment read of the tiled kernel (32 lanes, one register) hits 32
// different shared-memory banks, and the 16 metadata lanes 16.
void test_tiled_banks() {
  int conflicts = 0;
  for (int warp = 0; warp < TileCfg::kWarpsM * TileCfg::kWarpsN; ++warp)
    for (int s = 0; s < TileCfg::kKSteps; ++s)
      for (int t = 0; t < 4; ++t)
        for (int r = 0; r < 4; ++r) {
          unsigned a_banks = 0, b_banks = 0, m_banks = 0;
          int m_lanes = 0;
          for (int lane = 0; lane < 32; ++lane) {
            if (t < TileCfg::kWarpTilesM) a_banks |= 1u << (a_smem_word(warp, t, s, lane, r) % 32);
            b_banks |= 1u << (b_smem_word(warp, t, s, lane, r) % 32);
            if (t < TileCfg::kWarpTilesM && holds_metadata(lane)) {
              m_banks |= 1u << (meta_smem_word(warp, t, s, lane) % 32);
              ++m_lanes;
            }
          }
          conflicts += t < TileCfg::kWarpTilesM && a_banks != 0xffffffffu;
          conflicts += b_banks != 0xffffffffu;
          conflicts += __builtin_popcount(m_banks) != m_lanes;
        }
  CHECK(conflicts == 0, "%d fragment reads with shared-memory bank conflicts", conflicts);
}

void test_fragments_cover() {
  // Every element of every operand is held by exactly one (lane, register, half).
  int a_seen[16][16] = {}, b_seen[32][8] = {}, c_seen[16][8] = {};
  for (int lane = 0; lane < 32; ++lane) {
    for (int reg = 0; reg < 4; ++reg)
      for (int half = 0; half < 2; ++half) {
        const Coord ea = a_fragment(lane, reg, half), eb = b_fragment(lane, reg, half);
        ++a_seen[ea.row][ea.col];
        ++b_seen[eb.row][eb.col];
      }
    for (int i = 0; i < 4; ++i) {
      const Coord ec = c_fragment(lane, i);
      ++c_seen[ec.row][ec.col];
    }
  }
  int bad = 0;
  for (auto& r : a_seen) for (int v : r) bad += v != 1;
  for (auto& r : b_seen) for (int v : r) bad += v != 1;
  for (auto& r : c_seen) for (int v : r) bad += v != 1;
  CHECK(bad == 0, "%d operand elements not held exactly once", bad);
}

void test_nibbles_and_errors() {
  CHECK(chunk_nibble(0b0011) == (0 | (1 << 2)), "0011");
  CHECK(chunk_nibble(0b1010) == (1 | (3 << 2)), "1010");
  CHECK(chunk_nibble(0b1001) == (0 | (3 << 2)), "1001");
  for (unsigned bad : {0u, 1u, 8u, 7u, 15u}) CHECK(chunk_nibble(bad) == 0xff, "mask %u must be rejected", bad);
  for (unsigned m = 0; m < 16; ++m) {
    const uint8_t nib = chunk_nibble(m);
    if (nib == 0xff) continue;
    // ::ordered_metadata: first index below second; never the invalid 0000, 0101, 1010, 1111.
    CHECK((nib & 3) < (nib >> 2), "nibble of %u not ordered", m);
  }
  std::mt19937 rng(3);
  Tile24 a = random_24(16, 32, rng);
  std::vector<uint32_t> meta(16);
  CHECK(nm24_pack_metadata(a.bitmap.data(), 16, 32, meta.data()) == Status::kOk, "valid tile");
  CHECK(nm24_pack_metadata(a.bitmap.data(), 8, 32, meta.data()) == Status::kInvalidArgument, "rows %% 16");
  CHECK(nm24_pack_metadata(a.bitmap.data(), 16, 16, meta.data()) == Status::kInvalidArgument, "cols %% 32");
  // The emulator itself rejects what the instruction leaves undefined: zero
  // metadata (what zero-filled shared memory holds) and any other nibble whose
  // first index is not below its second.
  LaneRegs lanes[32] = {};
  double d[kTileM][kTileN];
  for (int lane = 0; lane < 32; ++lane) lanes[lane].e = holds_metadata(lane) ? meta[size_t(2 * (lane >> 2) + (lane & 1))] : 0u;
  CHECK(emulate_mma_sp(lanes, d) == 0, "packed metadata flagged");
  lanes[0].e = 0;
  CHECK(emulate_mma_sp(lanes, d) == 8, "zero metadata of lane 0 (8 chunks of rows 0 and 8) not flagged");
  lanes[0].e = (meta[0] & ~0xfu) | 0x5u;  // chunk 0 of row 0: both indices 1
  CHECK(emulate_mma_sp(lanes, d) >= 1, "disordered nibble not flagged");
  // Partial row blocks of the tiled kernel copy real metadata, never zeros.
  for (int64_t rows : {16, 80, 144})
    for (int64_t bx = 0; bx < (rows + TileCfg::kBlockM - 1) / TileCfg::kBlockM; ++bx)
      for (int tid = 0; tid < TileCfg::kMetaChunks; ++tid) {
        const TileProblem p{rows, 64, 8, 64};
        const ChunkCopy c = meta_chunk(p, bx, 0, tid);
        CHECK(c.valid && c.src >= 0 && c.src + 4 <= nm24_metadata_words(rows, 64),
              "metadata chunk %d of block %lld (rows %lld) outside the metadata", tid, (long long)bx, (long long)rows);
      }
  a.bitmap[0] = uint8_t(a.bitmap[0] | 0x0f);  // chunk 0 of row 0 keeps 4
  CHECK(nm24_pack_metadata(a.bitmap.data(), 16, 32, meta.data()) == Status::kInvalidArgument, "3:4 chunk accepted");
}

void test_grid_covers() {
  // Direct kernel: every output tile once, every k tile of a row tile once.
  for (int64_t rows : {16, 48, 64, 80, 4096})
    for (int64_t n : {1, 7, 8, 33, 100}) {
      std::vector<int> seen(size_t(rows / kTileM * ((n + kTileN - 1) / kTileN)), 0);
      for (int64_t bx = 0; bx < grid_x(rows); ++bx)
        for (int64_t by = 0; by < grid_y(n); ++by)
          for (int nt = 0; nt < Nm24Config::kNTiles; ++nt) {
            const int64_t col_tile = by * Nm24Config::kNTiles + nt;
            if (col_tile * kTileN < n) ++seen[size_t(bx * ((n + kTileN - 1) / kTileN) + col_tile)];
          }
      int bad = 0;
      for (int v : seen) bad += v != 1;
      CHECK(bad == 0, "rows=%lld n=%lld: %d output tiles not covered exactly once", (long long)rows, (long long)n, bad);
    }
  for (int64_t k_tiles : {1, 3, 4, 5, 130}) {
    std::vector<int> seen(size_t(k_tiles), 0);
    for (int w = 0; w < Nm24Config::kWarps; ++w)
      for (int64_t tk = first_k_tile(w); tk < k_tiles; tk += kKTileStep) ++seen[size_t(tk)];
    int bad = 0;
    for (int v : seen) bad += v != 1;
    CHECK(bad == 0, "k_tiles=%lld: %d k tiles not taken by exactly one warp", (long long)k_tiles, bad);
  }
}

}  // namespace

int main() {
  test_fragments_cover();
  test_nibbles_and_errors();
  test_grid_covers();
  std::mt19937 rng(7);
  test_product(16, 32, 8, rng);
  test_product(48, 96, 13, rng);
  test_product(32, 64, 1, rng);
  test_product(16, 320, 5, rng);  // 10 k tiles over 4 warps
  test_tiled_banks();
  // One block; partial blocks in both directions (80 rows, 70 and 17 columns);
  // several pipeline stages (k = 320: five stages through three buffers).
  test_tiled_product(64, 64, 64, 64, rng);
  test_tiled_product(80, 320, 70, 328, rng);
  test_tiled_product(16, 128, 17, 136, rng);
  test_tiled_product(144, 192, 130, 200, rng);
  return finish("test_nm24_fragments");
}

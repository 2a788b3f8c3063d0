// The tensor-core flash attention's addressing (csrc/cuda/attention/attn_tiles.h),
// checked on the CPU: a whole warp's S = Q K^T and O = P V run through the
// kernel's ldmatrix addresses, swizzled shared-memory layout and fragment
// packing, against an emulation of ldmatrix.x4[.trans] and mma.sync m16n8k16
// written here from the PTX ISA (not from the header). Small integers make
// every product exact, so results must match a direct matrix product bit for
// bit; the shared memory around the tiles is poisoned with NaNs, so a load
// outside a tile shows up. Also: every ldmatrix phase is free of bank
// conflicts, and the packed-row, positions-per-block and split maps cover
// their ranges exactly once.
#include <cmath>
#include <cstdint>
#include <vector>

#include "../../csrc/cuda/attention/attn_tiles.h"
#include "sparsecore/dtypes.h"
#include "test_harness.h"

using namespace sparsecore;
using namespace sparsecore::cuda::attn;

namespace {

constexpr uint16_t kPoison = 0x7fc0;  // bf16 NaN

struct Regs {
  uint32_t r[4];
};

float lo_of(uint32_t w) { return bf16_to_float(uint16_t(w & 0xffffu)); }
float hi_of(uint32_t w) { return bf16_to_float(uint16_t(w >> 16)); }
uint32_t pack(float lo, float hi) { return uint32_t(float_to_bf16(lo)) | (uint32_t(float_to_bf16(hi)) << 16); }

// ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16 (PTX ISA): lane 8i + r gives
// the 16-byte row r of matrix i; without .trans lane L receives, in register i,
// elements (row L/4, cols 2(L%4), 2(L%4)+1) of matrix i; with .trans, elements
// (rows 2(L%4), 2(L%4)+1, col L/4).
void ldmatrix_x4(const std::vector<uint16_t>& smem, const int addr[32], bool trans, Regs out[32]) {
  for (int lane = 0; lane < 32; ++lane)
    for (int i = 0; i < 4; ++i) {
      const int g = lane / 4, t = lane % 4;
      uint16_t e[2];
      for (int h = 0; h < 2; ++h) {
        const int row = trans ? 2 * t + h : g, col = trans ? g : 2 * t + h;
        e[h] = smem[size_t(addr[8 * i + row] + col)];
      }
      out[lane].r[i] = uint32_t(e[0]) | (uint32_t(e[1]) << 16);
    }
}

// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 (PTX ISA fragment
// layouts): A a0 (g, 2t..), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..);
// B b0 (k 2t.., n g), b1 (k 2t+8.., n g); C c0, c1 (g, 2t, 2t+1), c2, c3 (g+8, ..).
void mma(float c[32][4], const Regs a[32], const uint32_t b0[32], const uint32_t b1[32]) {
  float A[16][16], B[16][8];
  for (int lane = 0; lane < 32; ++lane) {
    const int g = lane / 4, t = lane % 4;
    const int ar[4] = {g, g + 8, g, g + 8}, ac[4] = {2 * t, 2 * t, 2 * t + 8, 2 * t + 8};
    for (int i = 0; i < 4; ++i) A[ar[i]][ac[i]] = lo_of(a[lane].r[i]), A[ar[i]][ac[i] + 1] = hi_of(a[lane].r[i]);
    B[2 * t][g] = lo_of(b0[lane]), B[2 * t + 1][g] = hi_of(b0[lane]);
    B[2 * t + 8][g] = lo_of(b1[lane]), B[2 * t + 9][g] = hi_of(b1[lane]);
  }
  for (int lane = 0; lane < 32; ++lane) {
    const int g = lane / 4, t = lane % 4;
    for (int e = 0; e < 4; ++e) {
      const int row = g + 8 * (e / 2), col = 2 * t + e % 2;
      float acc = c[lane][e];
      for (int k = 0; k < 16; ++k) acc += A[row][k] * B[k][col];
      c[lane][e] = acc;
    }
  }
}

// One ldmatrix.x4 of B fragments at the addresses `at(lane)` gives, then the two
// mma of n tiles c0 and c1 (registers 0, 1 and 2, 3), as the kernel issues them.
template <typename At>
void b_pair_mma(const std::vector<uint16_t>& smem, At at, bool trans, const Regs a[32], float c0[32][4],
                float c1[32][4]) {
  int addr[32];
  for (int lane = 0; lane < 32; ++lane) addr[lane] = at(lane);
  Regs b[32];
  ldmatrix_x4(smem, addr, trans, b);
  uint32_t b0[32], b1[32], b2[32], b3[32];
  for (int lane = 0; lane < 32; ++lane) b0[lane] = b[lane].r[0], b1[lane] = b[lane].r[1], b2[lane] = b[lane].r[2], b3[lane] = b[lane].r[3];
  mma(c0, a, b0, b1);
  mma(c1, a, b2, b3);
}

// One warp's S and O for head dim D and a 64 x D Q tile, kKeys keys.
template <int D>
void warp_tile(int warp, int seed) {
  using Cfg = FaConfig<D>;
  constexpr int kKeys = Cfg::kKeys, kChunks = Cfg::kChunks;
  const int guard = 64;  // poisoned halfwords before and after each tile
  std::vector<uint16_t> sq(size_t(Cfg::kQElems + 2 * guard), kPoison), sk(size_t(Cfg::kKVElems + 2 * guard), kPoison),
      sv(sk.size(), kPoison);
  std::vector<float> Q(size_t(Cfg::kRows * D)), K(size_t(kKeys * D)), V(size_t(kKeys * D));
  uint32_t state = uint32_t(seed) * 2654435761u + 1;
  auto small = [&](int span) {
    state = state * 1664525u + 1013904223u;
    return float(int((state >> 16) % uint32_t(2 * span + 1)) - span);
  };
  // Store through the kernel's layout, element by element within each 16-byte chunk.
  auto store = [&](std::vector<uint16_t>& s, std::vector<float>& m, int rows) {
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < D; ++c) {
        m[size_t(r * D + c)] = small(4);
        s[size_t(guard + tile_offset(r, c / 8, kChunks) + c % 8)] = float_to_bf16(m[size_t(r * D + c)]);
      }
  };
  store(sq, Q, Cfg::kRows);
  store(sk, K, kKeys);
  store(sv, V, kKeys);

  // S = Q K^T, as the kernel issues it.
  float s[kKeys / 8][32][4] = {};
  for (int ks = 0; ks < D / 16; ++ks) {
    int qa[32];
    for (int lane = 0; lane < 32; ++lane) {
      const RowChunk rc = q_ldmatrix(lane, warp * 16, ks);
      qa[lane] = guard + tile_offset(rc.row, rc.chunk, kChunks);
    }
    Regs a[32];
    ldmatrix_x4(sq, qa, false, a);
    for (int pp = 0; pp < kKeys / 16; ++pp) {
      auto at = [&](int lane) {
        const RowChunk rc = k_ldmatrix(lane, pp, ks);
        return guard + tile_offset(rc.row, rc.chunk, kChunks);
      };
      b_pair_mma(sk, at, false, a, s[2 * pp], s[2 * pp + 1]);
    }
  }
  int bad = 0;
  for (int nt = 0; nt < kKeys / 8; ++nt)
    for (int lane = 0; lane < 32; ++lane)
      for (int e = 0; e < 4; ++e) {
        const int row = warp * 16 + c_row(lane, e), key = 8 * nt + c_col(lane, e);
        float want = 0.f;
        for (int d = 0; d < D; ++d) want += Q[size_t(row * D + d)] * K[size_t(key * D + d)];
        bad += s[nt][lane][e] != want;
      }
  CHECK(bad == 0, "D=%d warp %d: %d wrong elements of S = Q K^T", D, warp, bad);

  // O = P V with P (small integers standing in for probabilities) packed from
  // the S accumulator layout into A fragments, as the kernel does.
  std::vector<float> P(size_t(16 * kKeys));
  for (int nt = 0; nt < kKeys / 8; ++nt)
    for (int lane = 0; lane < 32; ++lane)
      for (int e = 0; e < 4; ++e) {
        s[nt][lane][e] = small(3);
        P[size_t(c_row(lane, e) * kKeys + 8 * nt + c_col(lane, e))] = s[nt][lane][e];
      }
  float o[D / 8][32][4] = {};
  for (int ks = 0; ks < kKeys / 16; ++ks) {
    Regs a[32];
    for (int lane = 0; lane < 32; ++lane) {
      a[lane].r[0] = pack(s[2 * ks][lane][0], s[2 * ks][lane][1]);
      a[lane].r[1] = pack(s[2 * ks][lane][2], s[2 * ks][lane][3]);
      a[lane].r[2] = pack(s[2 * ks + 1][lane][0], s[2 * ks + 1][lane][1]);
      a[lane].r[3] = pack(s[2 * ks + 1][lane][2], s[2 * ks + 1][lane][3]);
    }
    for (int pp = 0; pp < D / 16; ++pp) {
      auto at = [&](int lane) {
        const RowChunk rc = v_ldmatrix(lane, ks, pp);
        return guard + tile_offset(rc.row, rc.chunk, kChunks);
      };
      b_pair_mma(sv, at, true, a, o[2 * pp], o[2 * pp + 1]);
    }
  }
  bad = 0;
  for (int dt = 0; dt < D / 8; ++dt)
    for (int lane = 0; lane < 32; ++lane)
      for (int e = 0; e < 4; ++e) {
        const int row = c_row(lane, e), d = 8 * dt + c_col(lane, e);
        float want = 0.f;
        for (int j = 0; j < kKeys; ++j) want += P[size_t(row * kKeys + j)] * V[size_t(j * D + d)];
        bad += o[dt][lane][e] != want;
      }
  CHECK(bad == 0, "D=%d warp %d: %d wrong elements of O = P V", D, warp, bad);
}

// Each ldmatrix phase (8 lanes, 8 rows of 16 bytes) must touch 8 distinct
// 16-byte bank groups of a 128-byte line.
template <int D>
void bank_conflicts() {
  using Cfg = FaConfig<D>;
  constexpr int kChunks = Cfg::kChunks;
  int conflicts = 0;
  auto phase_ok = [&](auto addr_of) {
    for (int ph = 0; ph < 4; ++ph) {
      unsigned groups = 0;
      for (int r = 0; r < 8; ++r) groups |= 1u << ((addr_of(8 * ph + r) * 2 / 16) % 8);
      conflicts += groups != 0xffu;
    }
  };
  for (int ks = 0; ks < D / 16; ++ks) {
    for (int w = 0; w < Cfg::kWarps; ++w)
      phase_ok([&](int lane) { const RowChunk rc = q_ldmatrix(lane, 16 * w, ks); return tile_offset(rc.row, rc.chunk, kChunks); });
    for (int pp = 0; pp < Cfg::kKeys / 16; ++pp)
      phase_ok([&](int lane) { const RowChunk rc = k_ldmatrix(lane, pp, ks); return tile_offset(rc.row, rc.chunk, kChunks); });
  }
  for (int ks = 0; ks < Cfg::kKeys / 16; ++ks)
    for (int pp = 0; pp < D / 16; ++pp)
      phase_ok([&](int lane) { const RowChunk rc = v_ldmatrix(lane, ks, pp); return tile_offset(rc.row, rc.chunk, kChunks); });
  CHECK(conflicts == 0, "D=%d: %d ldmatrix phases with bank conflicts", D, conflicts);
}

void schedules() {
  // Packed rows: (head, position) pairs covered once for every group size.
  for (int nh : {1, 2, 3, 4, 8, 9, 16, 64}) {
    const int ppb = positions_per_block(nh, 64, 0);
    CHECK(nh * ppb <= 64 && 2 * nh * ppb > 64, "nh=%d: %d positions per block", nh, ppb);
    std::vector<int> seen(size_t(nh * ppb), 0);
    for (int r = 0; r < nh * ppb; ++r) {
      const PackedRow pr = packed_row(r, nh);
      CHECK(pr.head < nh && pr.pos < ppb, "packed row %d of nh=%d out of range", r, nh);
      ++seen[size_t(pr.pos * nh + pr.head)];
    }
    for (int i = 0; i < nh * ppb; ++i) CHECK(seen[size_t(i)] == 1, "nh=%d: pair %d covered %d times", nh, i, seen[size_t(i)]);
    // With a mask, a block never straddles two q blocks.
    for (int64_t bq : {16, 48, 64, 80, 128}) {
      const int p = positions_per_block(nh, 64, bq);
      CHECK(bq % p == 0 && nh * p <= 64, "nh=%d block_q=%lld: %d positions", nh, (long long)bq, p);
    }
  }
  for (int64_t units : {0, 1, 5, 64, 1000})
    for (int splits : {1, 3, 8, 64}) {
      int64_t covered = 0, next = 0;
      for (int z = 0; z < splits; ++z) {
        int64_t u0, u1;
        split_range(units, z, splits, &u0, &u1);
        CHECK(u0 == next && u1 >= u0, "split %d of %d over %lld units", z, splits, (long long)units);
        covered += u1 - u0, next = u1;
      }
      CHECK(covered == units, "splits cover %lld of %lld units", (long long)covered, (long long)units);
    }
}

}  // namespace

int main() {
  for (int w = 0; w < 4; ++w) {
    warp_tile<64>(w, 1 + w);
    warp_tile<128>(w, 11 + w);
    warp_tile<256>(w, 21 + w);
  }
  bank_conflicts<64>();
  bank_conflicts<128>();
  bank_conflicts<256>();
  schedules();
  return sparsecore::testing::finish("test_attn_fragments");
}

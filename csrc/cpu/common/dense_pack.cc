// Packing of the dense operand and the bias, shared by all CPU sparse x
// dense kernels (see dense_pack.h). Baseline TU (no -m flags).
#include "dense_pack.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "../thread_pool.h"
#include "sparsecore/cpu_isa.h"

namespace sparsecore::cpu {
namespace {

constexpr int64_t kPadFloats = 16;  // widest vector (AVX-512 fp32 lanes)

template <DType T>
float read(const void* p, int64_t i) {
  return load_as_float(p, i, T);
}

// Pack rows [k0, k1) of B into the tiled layout of PackedDense. A NaN or Inf
// is packed as 0 and its column marked in bad[] (n entries): v * 0 is NaN
// exactly for NaN and Inf, which keeps the loops branch-free.
template <DType T>
void pack_rows(const MatrixView& b, const PackedDense& p, float* dst, int64_t k0, int64_t k1, uint8_t* bad) {
  using S = std::conditional_t<T == DType::kFloat32, float, uint16_t>;
  const S* src = static_cast<const S*>(b.data);
  const int64_t n = b.cols, tile = p.tile;
  // Column j of B lives at col_base(j) + r * tile.
  auto col_base = [&](int64_t j) { return dst + (j / tile) * p.tile_stride + j % tile; };
  if (b.col_stride == 1 && n > 1 && tile > 1) {
    // Row-contiguous source: each row of B is a run of whole tiles.
    for (int64_t k = k0; k < k1; ++k) {
      const S* row = src + k * b.row_stride;
      for (int64_t j0 = 0; j0 < n; j0 += tile) {
        float* d = col_base(j0) + k * tile;
        const int64_t w = std::min(tile, n - j0);
        for (int64_t j = 0; j < w; ++j) {
          const float v = read<T>(row, j0 + j);
          const float z = v * 0.f;
          d[j] = z == z ? v : 0.f;
          bad[j0 + j] |= uint8_t(z != z);
        }
        for (int64_t j = w; j < tile; ++j) d[j] = 0.f;
      }
    }
  } else {
    // Column-contiguous source (x @ W.T reads x^T): walk each column of B,
    // 64 rows at a time so the strided writes stay in L1.
    for (int64_t kb = k0; kb < k1; kb += 64) {
      const int64_t ke = std::min(k1, kb + 64);
      for (int64_t j = 0; j < n; ++j) {
        const S* col = src + j * b.col_stride;
        float* d = col_base(j);
        float poison = 0.f;
        for (int64_t k = kb; k < ke; ++k) {
          const float v = read<T>(col, k * b.row_stride);
          const float z = v * 0.f;
          d[k * tile] = z == z ? v : 0.f;
          poison += z;
        }
        bad[j] |= uint8_t(poison != poison);
      }
      // Padding columns of the last tile.
      const int64_t padded = (n + tile - 1) / tile * tile;
      for (int64_t j = n; j < padded; ++j) {
        float* d = col_base(j);
        for (int64_t k = kb; k < ke; ++k) d[k * tile] = 0.f;
      }
    }
  }
}

void pack_rows_any(const MatrixView& b, const PackedDense& p, float* dst, int64_t k0, int64_t k1, uint8_t* bad) {
  switch (b.dtype) {
    case DType::kFloat32: pack_rows<DType::kFloat32>(b, p, dst, k0, k1, bad); break;
    case DType::kFloat16: pack_rows<DType::kFloat16>(b, p, dst, k0, k1, bad); break;
    default: pack_rows<DType::kBFloat16>(b, p, dst, k0, k1, bad); break;
  }
}

}  // namespace

bool matrix_view_ok(const MatrixView& m) {
  if (m.rows < 0 || m.cols < 0 || m.row_stride < 0 || m.col_stride < 0) return false;
  return m.rows == 0 || m.cols == 0 || m.data != nullptr;
}

float* thread_scratch(int64_t floats) {
  static thread_local std::vector<float> buffer;
  if (int64_t(buffer.size()) < floats) buffer.resize(size_t(floats));
  return buffer.data();
}

// Packs B into a per-thread buffer with `tile` columns per tile (see
// PackedDense) and records its non-finite columns.
Status pack_dense(const MatrixView& b, int64_t tile, bool parallel, PackedDense* out) {
  static thread_local std::vector<float> buffer;
  static thread_local std::vector<uint8_t> flags;
  const int64_t k = b.rows, n = b.cols;
  const int64_t tiles = (n + tile - 1) / tile;
  // k rows + the zero row + kPadFloats zeros: full vector loads stay inside. Every tile
  // starts on a 64-byte boundary: a 32-byte load at a 16-byte offset splits across two
  // cache lines every other time, and the SpMM kernels issue one B load per FMA
  // (measured: 2:4 prefill 0.80 -> 1.00 vector FMAs per cycle on one Zen 3 core).
  constexpr int64_t kAlignFloats = 16;
  const int64_t tile_stride = ((k + 1) * tile + kPadFloats + kAlignFloats - 1) / kAlignFloats * kAlignFloats;
  const size_t need = size_t(tiles * tile_stride + kAlignFloats);
  const int64_t blocks = parallel ? std::max<int64_t>(1, std::min<int64_t>(k / 256, 4 * cpu_num_threads())) : 1;
  if (buffer.size() < need) buffer.resize(need);
  // One row of column flags per block (blocks share columns), ORed at the end.
  flags.assign(size_t(blocks * n), 0);
  const uintptr_t raw = reinterpret_cast<uintptr_t>(buffer.data());
  float* dst = buffer.data() + (((raw + 63) & ~uintptr_t(63)) - raw) / sizeof(float);
  out->data = dst;
  out->rows = k;
  out->n = n;
  out->tile = tile;
  out->tile_stride = tile_stride;
  out->nonfinite = nullptr;
  for (int64_t t = 0; t < tiles; ++t) std::fill(dst + t * tile_stride + k * tile, dst + (t + 1) * tile_stride, 0.f);
  uint8_t* bad = flags.data();
  auto pack_block = [&](int64_t i) {
    const int64_t k0 = k * i / blocks, k1 = k * (i + 1) / blocks;
    pack_rows_any(b, *out, dst, k0, k1, bad + i * n);
  };
  if (Status s = cpu::parallel_for(blocks, pack_block); s != Status::kOk) return s;
  bool any = false;
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t i = 1; i < blocks; ++i) bad[j] |= bad[i * n + j];
    any |= bad[j] != 0;
  }
  if (any) out->nonfinite = bad;
  return Status::kOk;
}

void store_bias_only(const MatrixView& c, const float* bias) {
  for (int64_t r = 0; r < c.rows; ++r)
    for (int64_t j = 0; j < c.cols; ++j)
      store_from_float(c.data, r * c.row_stride + j * c.col_stride, c.dtype, bias ? bias[r] : 0.f);
}

void poison_columns(const PackedDense& b, const MatrixView& c) {
  if (b.nonfinite == nullptr) return;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int64_t j = 0; j < c.cols; ++j) {
    if (!b.nonfinite[j]) continue;
    for (int64_t r = 0; r < c.rows; ++r) store_from_float(c.data, r * c.row_stride + j * c.col_stride, c.dtype, nan);
  }
}

int64_t spmm_tile(int64_t n) {
  return std::min<int64_t>((n + kPadFloats - 1) / kPadFloats * kPadFloats, cpu::kSpmmTileCols);
}

// Bias converted to fp32 (finite-checked) in a per-thread buffer.
Status convert_bias(const Epilogue& ep, int64_t rows, const float** out) {
  static thread_local std::vector<float> buffer;
  *out = nullptr;
  if (ep.bias == nullptr) return Status::kOk;
  buffer.resize(size_t(rows));
  for (int64_t i = 0; i < rows; ++i) buffer[size_t(i)] = load_as_float(ep.bias, i, ep.bias_dtype);
  *out = buffer.data();
  return Status::kOk;
}


}  // namespace sparsecore::cpu

// CPU entry points for CSR and BSR SpMM: argument checks, packing of the
// dense operand, ISA dispatch and threading. Baseline TU (no -m flags).
#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "../thread_pool.h"
#include "sparsecore/cpu_isa.h"
#include "sparsecore/ops.h"
#include "spmm_isa.h"

namespace sparsecore {
namespace {

using cpu::PackedDense;
using cpu::SpmmOutput;

// Below this many multiply-adds a call runs on one thread: waking the pool
// costs more than it saves.
constexpr int64_t kMinParallelWork = 1 << 15;
constexpr int64_t kPadFloats = 16;  // widest vector (AVX-512 fp32 lanes)

bool view_ok(const MatrixView& m) {
  if (m.rows < 0 || m.cols < 0 || m.row_stride < 0 || m.col_stride < 0) return false;
  return m.rows == 0 || m.cols == 0 || m.data != nullptr;
}

template <DType T>
float read(const void* p, int64_t i) {
  return load_as_float(p, i, T);
}

// Pack rows [k0, k1) of B into the tiled layout of PackedDense. Returns
// false when a NaN or Inf was seen: v * 0 is NaN exactly for NaN and Inf, and
// the sum of those stays NaN, which keeps the loops vectorisable.
template <DType T>
bool pack_rows(const MatrixView& b, const PackedDense& p, float* dst, int64_t k0, int64_t k1) {
  using S = std::conditional_t<T == DType::kFloat32, float, uint16_t>;
  const S* src = static_cast<const S*>(b.data);
  float poison = 0.f;
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
          d[j] = v;
          poison += v * 0.f;
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
        for (int64_t k = kb; k < ke; ++k) {
          const float v = read<T>(col, k * b.row_stride);
          d[k * tile] = v;
          poison += v * 0.f;
        }
      }
      // Padding columns of the last tile.
      const int64_t padded = (n + tile - 1) / tile * tile;
      for (int64_t j = n; j < padded; ++j) {
        float* d = col_base(j);
        for (int64_t k = kb; k < ke; ++k) d[k * tile] = 0.f;
      }
    }
  }
  return !std::isnan(poison);
}

bool pack_rows_any(const MatrixView& b, const PackedDense& p, float* dst, int64_t k0, int64_t k1) {
  switch (b.dtype) {
    case DType::kFloat32: return pack_rows<DType::kFloat32>(b, p, dst, k0, k1);
    case DType::kFloat16: return pack_rows<DType::kFloat16>(b, p, dst, k0, k1);
    default: return pack_rows<DType::kBFloat16>(b, p, dst, k0, k1);
  }
}

// Packs B into a per-thread buffer with `tile` columns per tile (see
// PackedDense). Returns false on non-finite input.
bool pack_dense(const MatrixView& b, int64_t tile, bool parallel, PackedDense* out) {
  static thread_local std::vector<float> buffer;
  const int64_t k = b.rows, n = b.cols;
  const int64_t tiles = (n + tile - 1) / tile;
  // k rows + the zero row + kPadFloats zeros: full vector loads stay inside.
  const int64_t tile_stride = (k + 1) * tile + kPadFloats;
  const size_t need = size_t(tiles * tile_stride);
  if (buffer.size() < need) buffer.resize(need);
  float* dst = buffer.data();
  out->data = dst;
  out->rows = k;
  out->n = n;
  out->tile = tile;
  out->tile_stride = tile_stride;
  for (int64_t t = 0; t < tiles; ++t) std::fill(dst + t * tile_stride + k * tile, dst + (t + 1) * tile_stride, 0.f);
  const int64_t blocks = parallel ? std::max<int64_t>(1, std::min<int64_t>(k / 256, 4 * cpu_num_threads())) : 1;
  std::vector<char> finite(size_t(blocks), 1);
  auto pack_block = [&](int64_t i) {
    const int64_t k0 = k * i / blocks, k1 = k * (i + 1) / blocks;
    finite[size_t(i)] = pack_rows_any(b, *out, dst, k0, k1);
  };
  cpu::parallel_for(blocks, pack_block);
  return std::all_of(finite.begin(), finite.end(), [](char f) { return f != 0; });
}

// Tile width for the SpMM kernels: whole 16-float vectors, at most
// kSpmmTileCols columns (the kernels cut B into L2-sized panels of a tile).
int64_t spmm_tile(int64_t n) {
  return std::min<int64_t>((n + kPadFloats - 1) / kPadFloats * kPadFloats, cpu::kSpmmTileCols);
}

// Bias converted to fp32 (finite-checked) in a per-thread buffer.
Status convert_bias(const Epilogue& ep, int64_t rows, const float** out) {
  static thread_local std::vector<float> buffer;
  *out = nullptr;
  if (ep.bias == nullptr) return Status::kOk;
  buffer.resize(size_t(rows));
  for (int64_t i = 0; i < rows; ++i) {
    buffer[size_t(i)] = load_as_float(ep.bias, i, ep.bias_dtype);
    if (!std::isfinite(buffer[size_t(i)])) return Status::kNonFinite;
  }
  *out = buffer.data();
  return Status::kOk;
}

}  // namespace

namespace cpu {
float* thread_scratch(int64_t floats) {
  static thread_local std::vector<float> buffer;
  if (int64_t(buffer.size()) < floats) buffer.resize(size_t(floats));
  return buffer.data();
}
}  // namespace cpu

namespace {

bool row_ptr_ok(const int64_t* row_ptr, int64_t rows, int64_t nnz) {
  if (row_ptr == nullptr || row_ptr[0] != 0 || row_ptr[rows] != nnz) return false;
  for (int64_t r = 0; r < rows; ++r)
    if (row_ptr[r + 1] < row_ptr[r]) return false;
  return true;
}

using CsrRowsFn = void (*)(const CsrView&, const PackedDense&, const SpmmOutput&, int64_t, int64_t);
using BsrRowsFn = void (*)(const BsrView&, const PackedDense&, const SpmmOutput&, int64_t, int64_t);

template <typename Fn>
Fn pick(Fn scalar_fn, Fn avx2_fn, Fn avx512_fn, Fn simde_fn) {
  switch (cpu_isa_selected()) {
    case CpuIsa::kAvx2: return avx2_fn ? avx2_fn : scalar_fn;
    case CpuIsa::kAvx512: return avx512_fn ? avx512_fn : scalar_fn;
    case CpuIsa::kAvx512Simde: return simde_fn ? simde_fn : scalar_fn;
    default: return scalar_fn;
  }
}

#if defined(SPARSECORE_HAVE_AVX2)
#define SC_AVX2(f) &cpu::avx2::f
#else
#define SC_AVX2(f) nullptr
#endif
#if defined(SPARSECORE_HAVE_AVX512)
#define SC_AVX512(f) &cpu::avx512::f
#else
#define SC_AVX512(f) nullptr
#endif
#if defined(SPARSECORE_HAVE_AVX512_SIMDE)
#define SC_SIMDE(f) &cpu::avx512_simde::f
#else
#define SC_SIMDE(f) nullptr
#endif

// Runs rows_fn over the plan's chunks (or an even split when there is none).
template <typename View, typename Fn>
void run_chunks(const View& a, int64_t rows, const PackedDense& b, const SpmmOutput& out, Fn rows_fn,
                bool parallel) {
  if (!parallel) {
    rows_fn(a, b, out, 0, rows);
    return;
  }
  if (a.row_chunks != nullptr && a.num_chunks > 0) {
    cpu::parallel_for(a.num_chunks, [&](int64_t i) { rows_fn(a, b, out, a.row_chunks[i], a.row_chunks[i + 1]); });
  } else {
    const int64_t parts = std::min<int64_t>(rows, 4 * cpu_num_threads());
    cpu::parallel_for(parts, [&](int64_t i) { rows_fn(a, b, out, rows * i / parts, rows * (i + 1) / parts); });
  }
}

Status check_common(int64_t rows, int64_t cols, const MatrixView& b, const MatrixView& c) {
  if (!view_ok(b) || !view_ok(c)) return Status::kInvalidArgument;
  if (b.rows != cols || c.rows != rows || c.cols != b.cols) return Status::kInvalidArgument;
  return Status::kOk;
}

}  // namespace

Status csr_spmm_cpu(const CsrView& a, const MatrixView& b, const Epilogue& ep, const MatrixView& c) {
  if (a.rows < 0 || a.cols < 0 || a.nnz < 0) return Status::kInvalidArgument;
  if (Status s = check_common(a.rows, a.cols, b, c); s != Status::kOk) return s;
  if (!row_ptr_ok(a.row_ptr, a.rows, a.nnz)) return Status::kInvalidArgument;
  if (a.nnz > 0 && (a.col_idx == nullptr || a.values == nullptr)) return Status::kInvalidArgument;
  if (c.rows == 0 || c.cols == 0) return Status::kOk;
  const bool parallel = a.nnz * b.cols >= kMinParallelWork;
  // The GEMV and the bitmap kernel (up to 8 columns) read each column of B
  // contiguously; the SpMM kernel reads rows of 64-column tiles.
  const bool by_column = b.cols == 1 || (a.bitmap != nullptr && b.cols <= 8);
  PackedDense packed;
  if (!pack_dense(b, by_column ? 1 : spmm_tile(b.cols), parallel, &packed)) return Status::kNonFinite;
  SpmmOutput out;
  out.c = c;
  if (Status s = convert_bias(ep, a.rows, &out.bias); s != Status::kOk) return s;
  CsrRowsFn fn = pick<CsrRowsFn>(&cpu::scalar::csr_rows, SC_AVX2(csr_rows), SC_AVX512(csr_rows), SC_SIMDE(csr_rows));
  run_chunks(a, a.rows, packed, out, fn, parallel);
  return Status::kOk;
}

Status bsr_spmm_cpu(const BsrView& a, const MatrixView& b, const Epilogue& ep, const MatrixView& c) {
  if (a.block_rows < 0 || a.block_cols < 0 || a.nnzb < 0) return Status::kInvalidArgument;
  if (a.block_h < 1 || a.block_w < 1 || a.block_h > 256 || a.block_w > 256) return Status::kInvalidArgument;
  if (Status s = check_common(a.rows(), a.cols(), b, c); s != Status::kOk) return s;
  if (!row_ptr_ok(a.row_ptr, a.block_rows, a.nnzb)) return Status::kInvalidArgument;
  if (a.nnzb > 0 && (a.col_idx == nullptr || a.values == nullptr)) return Status::kInvalidArgument;
  if (c.rows == 0 || c.cols == 0) return Status::kOk;
  const bool parallel = a.nnzb * a.block_h * a.block_w * b.cols >= kMinParallelWork;
  PackedDense packed;
  if (!pack_dense(b, b.cols == 1 ? 1 : spmm_tile(b.cols), parallel, &packed)) return Status::kNonFinite;
  SpmmOutput out;
  out.c = c;
  if (Status s = convert_bias(ep, a.rows(), &out.bias); s != Status::kOk) return s;
  BsrRowsFn fn = pick<BsrRowsFn>(&cpu::scalar::bsr_rows, SC_AVX2(bsr_rows), SC_AVX512(bsr_rows), SC_SIMDE(bsr_rows));
  run_chunks(a, a.block_rows, packed, out, fn, parallel);
  return Status::kOk;
}

}  // namespace sparsecore

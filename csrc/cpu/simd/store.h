// Writing finished rows of C (any dtype, any strides, bias added) from fp32
// accumulators. Per-ISA internal code like simd.h: include it after simd.h.
#pragma once

#include "../common/dense_pack.h"

namespace sparsecore::cpu::SPARSECORE_ISA_NS {
namespace {

// (No std::min here: a standard-library template instantiated with AVX-512
// flags could be the copy the linker keeps for every caller.)
inline int64_t min64(int64_t x, int64_t y) { return x < y ? x : y; }

inline void store_values(const SpmmOutput& out, int64_t row, int64_t n0, int64_t width, const float* t) {
  const float bias = out.bias ? out.bias[row] : 0.f;
  const MatrixView& c = out.c;
  if (c.dtype == DType::kFloat32 && c.col_stride == 1) {
    float* dst = static_cast<float*>(c.data) + row * c.row_stride + n0;
    for (int64_t j = 0; j < width; ++j) dst[j] = t[j] + bias;
  } else {
    const int64_t base = row * c.row_stride + n0 * c.col_stride;
    for (int64_t j = 0; j < width; ++j) store_from_float(c.data, base + j * c.col_stride, c.dtype, t[j] + bias);
  }
}

// Writes rows [r0, r1) x columns [n0, n0 + width) from a row-major buffer
// (row stride ld) into C when C is column-contiguous (x @ W.T writes y^T):
// walking down each column keeps the writes contiguous instead of touching
// `width` distant rows of y for every row of C.
template <typename S, typename Convert>
void store_columns(const SpmmOutput& out, int64_t r0, int64_t r1, int64_t n0, int64_t width, const float* buf,
                   int64_t ld, Convert convert) {
  S* c = static_cast<S*>(out.c.data);
  for (int64_t j = 0; j < width; ++j) {
    S* col = c + (n0 + j) * out.c.col_stride;
    for (int64_t r = r0; r < r1; ++r) {
      const float bias = out.bias ? out.bias[r] : 0.f;
      col[r] = convert(buf[(r - r0) * ld + j] + bias);
    }
  }
}

inline void store_block_by_columns(const SpmmOutput& out, int64_t r0, int64_t r1, int64_t n0, int64_t width,
                            const float* buf, int64_t ld) {
  switch (out.c.dtype) {
    case DType::kFloat32: store_columns<float>(out, r0, r1, n0, width, buf, ld, [](float v) { return v; }); break;
    case DType::kFloat16: store_columns<uint16_t>(out, r0, r1, n0, width, buf, ld, float_to_fp16); break;
    case DType::kBFloat16: store_columns<uint16_t>(out, r0, r1, n0, width, buf, ld, float_to_bf16); break;
  }
}

template <int NV>
inline void store_tile(const SpmmOutput& out, int64_t row, int64_t n0, int64_t width, const Vec* acc) {
  alignas(64) float t[NV * kLanes];
  for (int j = 0; j < NV; ++j) vstore(t + j * kLanes, acc[j]);
  store_values(out, row, n0, width, t);
}

}  // namespace
}  // namespace sparsecore::cpu::SPARSECORE_ISA_NS

// Naive float64-accumulating references for the C++ tests and benchmarks.
// Deliberately simple: element-at-a-time, no blocking, no SIMD.
#pragma once
#include <vector>

#include "sparsecore/act.h"
#include "sparsecore/nm.h"
#include "sparsecore/spmm.h"

namespace sparsecore::reference {

inline double element(const MatrixView& m, int64_t r, int64_t c) {
  return double(load_as_float(m.data, r * m.row_stride + c * m.col_stride, m.dtype));
}

// C = A @ B (+ bias[row]) in float64, row-major rows x n.
inline std::vector<double> csr_spmm(const CsrView& a, const MatrixView& b, const float* bias) {
  std::vector<double> c(size_t(a.rows * b.cols), 0.0);
  for (int64_t r = 0; r < a.rows; ++r)
    for (int64_t j = 0; j < b.cols; ++j) {
      double s = bias ? double(bias[r]) : 0.0;
      for (int64_t p = a.row_ptr[r]; p < a.row_ptr[r + 1]; ++p)
        s += double(load_as_float(a.values, p, a.value_dtype)) * element(b, load_index(a.col_idx, p, a.index_type), j);
      c[size_t(r * b.cols + j)] = s;
    }
  return c;
}

inline std::vector<double> bsr_spmm(const BsrView& a, const MatrixView& b, const float* bias) {
  const int64_t R = a.block_h, C = a.block_w;
  std::vector<double> c(size_t(bsr_total_rows(a) * b.cols), 0.0);
  for (int64_t r = 0; r < bsr_total_rows(a); ++r)
    for (int64_t j = 0; j < b.cols; ++j) c[size_t(r * b.cols + j)] = bias ? double(bias[r]) : 0.0;
  for (int64_t br = 0; br < a.block_rows; ++br)
    for (int64_t p = a.row_ptr[br]; p < a.row_ptr[br + 1]; ++p) {
      const int64_t bc = load_index(a.col_idx, p, a.index_type);
      for (int64_t i = 0; i < R; ++i)
        for (int64_t k = 0; k < C; ++k) {
          const double v = double(load_as_float(a.values, (p * R + i) * C + k, a.value_dtype));
          for (int64_t j = 0; j < b.cols; ++j) c[size_t((br * R + i) * b.cols + j)] += v * element(b, bc * C + k, j);
        }
    }
  return c;
}

// N:M in its CPU layout: walk the bitmap, values in column order.
inline std::vector<double> nm_spmm(const NmView& a, const MatrixView& b, const float* bias) {
  std::vector<double> c(size_t(a.rows * b.cols), 0.0);
  const int64_t stride = bitmap_row_bytes(a.cols);
  for (int64_t r = 0; r < a.rows; ++r)
    for (int64_t j = 0; j < b.cols; ++j) {
      double s = bias ? double(bias[r]) : 0.0;
      int64_t p = r * nm_values_per_row(a);
      for (int64_t k = 0; k < a.cols; ++k)
        if ((a.bitmap[r * stride + (k >> 3)] >> (k & 7)) & 1)
          s += double(load_as_float(a.values, p++, a.value_dtype)) * element(b, k, j);
      c[size_t(r * b.cols + j)] = s;
    }
  return c;
}

}  // namespace sparsecore::reference

// Output buffers and exact comparison against the float64 reference, shared
// by the CPU kernel tests.
#pragma once
#include <vector>

#include <cstdio>

#include "random_sparse.h"
#include "sparsecore/cpu_isa.h"
#include "sparsecore/act.h"
#include "sparsecore/nm.h"
#include "sparsecore/spmm.h"

namespace sparsecore::testing {

inline float round_to(double v, DType t) {
  const float f = float(v);
  if (t == DType::kFloat32) return f;
  if (t == DType::kBFloat16) return bf16_to_float(float_to_bf16(f));
  return fp16_to_float(float_to_fp16(f));
}

// Output storage in dtype ct, laid out as rows x n with the given strides.
struct Out {
  std::vector<float> f32;
  std::vector<uint16_t> b16;
  MatrixView view;
  Out(int64_t rows, int64_t n, DType ct, bool transposed) {
    const int64_t count = rows * n;
    f32.assign(size_t(count), -1.f);
    b16.assign(size_t(count), 0xffff);
    view.data = ct == DType::kFloat32 ? static_cast<void*>(f32.data()) : b16.data();
    view.rows = rows;
    view.cols = n;
    view.row_stride = transposed ? 1 : n;
    view.col_stride = transposed ? rows : 1;
    view.dtype = ct;
  }
  float at(int64_t r, int64_t j) const { return load_as_float(view.data, r * view.row_stride + j * view.col_stride, view.dtype); }
};

inline MatrixView dense_view(OwnedDense& d, int64_t k, int64_t n, bool transposed) {
  MatrixView b;
  b.data = d.data();
  b.rows = k;
  b.cols = n;
  // transposed: B is x^T for x of shape (n, k), as in x @ W.T.
  b.row_stride = transposed ? 1 : n;
  b.col_stride = transposed ? k : 1;
  b.dtype = d.dtype;
  return b;
}

inline int compare(const std::vector<double>& ref, const Out& out, int64_t rows, int64_t n) {
  int bad = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; ++j) {
      const float want = round_to(ref[size_t(r * n + j)], out.view.dtype);
      if (out.at(r, j) != want) ++bad;
    }
  return bad;
}

// Runs test(isa) on every ISA path compiled in and runnable here, with 1 and 3
// threads; returns how many paths ran, and leaves the default thread count.
template <typename Test>
int on_every_isa(Test test) {
  int paths = 0;
  for (CpuIsa isa : {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512, CpuIsa::kAvx512Simde}) {
    if (!cpu_isa_set(isa)) {
      std::printf("ISA %s: not runnable here\n", cpu_isa_name(isa));
      continue;
    }
    ++paths;
    for (int threads : {1, 3}) {
      cpu_set_num_threads(threads);
      test(isa);
    }
    std::printf("ISA %s: tested\n", cpu_isa_name(isa));
  }
  cpu_set_num_threads(0);
  return paths;
}

}  // namespace sparsecore::testing

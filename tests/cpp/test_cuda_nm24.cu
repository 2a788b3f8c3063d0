// The 2:4 tensor-core kernel on a real GPU against a float64 reference, with
// small integers so bf16/fp16 inputs and fp32 accumulation are exact.
// Returns 77 (skipped) without a GPU with sm_80 or later.
#include <cuda_runtime.h>

#include <cstdio>
#include <random>
#include <vector>

#include "random_24.h"
#include "sparsecore/act.h"
#include "sparsecore/nm.h"
#include "sparsecore/spmm.h"
#include "test_harness.h"

using namespace sparsecore;
using namespace sparsecore::testing;

namespace {

int run(int64_t rows, int64_t cols, int64_t n, DType dt, std::mt19937& rng) {
  std::uniform_int_distribution<int> val(-8, 8);
  auto enc = [&](float v) { return dt == DType::kBFloat16 ? float_to_bf16(v) : float_to_fp16(v); };
  const Tile24 t = random_24(rows, cols, rng);
  const std::vector<float>& dense = t.dense;
  const std::vector<uint8_t>& bitmap = t.bitmap;
  std::vector<uint16_t> values;
  for (float v : t.values) values.push_back(enc(v));
  std::vector<uint32_t> meta(size_t(nm24_metadata_words(rows, cols)));
  CHECK(nm24_pack_metadata(bitmap.data(), rows, cols, meta.data()) == Status::kOk, "pack");
  std::vector<uint16_t> x(size_t(n * cols));
  std::vector<float> xf(x.size());
  for (size_t i = 0; i < x.size(); ++i) { xf[i] = float(val(rng)); x[i] = enc(xf[i]); }
  void *d_vals, *d_meta, *d_x, *d_y;
  cudaMalloc(&d_vals, values.size() * 2);
  cudaMalloc(&d_meta, meta.size() * 4);
  cudaMalloc(&d_x, x.size() * 2);
  cudaMalloc(&d_y, size_t(rows * n) * 2);
  cudaMemcpy(d_vals, values.data(), values.size() * 2, cudaMemcpyHostToDevice);
  cudaMemcpy(d_meta, meta.data(), meta.size() * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(d_x, x.data(), x.size() * 2, cudaMemcpyHostToDevice);
  Nm24View a{rows, cols, d_vals, dt, static_cast<const uint32_t*>(d_meta)};
  MatrixView b{d_x, cols, n, 1, cols, dt};  // x^T
  MatrixView c{d_y, rows, n, 1, rows, dt};  // y^T
  const Status s = nm24_spmm_cuda(a, b, Epilogue{}, c, nullptr);
  CHECK(s == Status::kOk, "status %d", int(s));
  std::vector<uint16_t> y(size_t(rows * n));
  cudaMemcpy(y.data(), d_y, y.size() * 2, cudaMemcpyDeviceToHost);
  int bad = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; ++j) {
      double want = 0;
      for (int64_t k = 0; k < cols; ++k) want += double(dense[size_t(r * cols + k)]) * xf[size_t(j * cols + k)];
      const uint16_t got = y[size_t(j * rows + r)];
      if (got != enc(float(want))) ++bad;
    }
  CHECK(bad == 0, "%s %lldx%lld n=%lld: %d wrong", dtype_name(dt), (long long)rows, (long long)cols, (long long)n, bad);
  cudaFree(d_vals);
  cudaFree(d_meta);
  cudaFree(d_x);
  cudaFree(d_y);
  return bad;
}

}  // namespace

int main() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    std::printf("no CUDA device: skipped\n");
    return 77;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  if (prop.major < 8) {
    std::printf("sm_%d%d has no sparse tensor cores: skipped\n", prop.major, prop.minor);
    return 77;
  }
  std::mt19937 rng(11);
  for (DType dt : {DType::kBFloat16, DType::kFloat16})
    for (int64_t n : {1, 5, 8, 16, 17, 40, 64, 130}) {
      run(16, 32, n, dt, rng);
      run(80, 160, n, dt, rng);
      run(80, 192, n, dt, rng);   // n > 16: the tiled kernel, a partial row block
      run(144, 320, n, dt, rng);  // five k stages through three buffers
    }
  return finish("test_cuda_nm24");
}

// The activation-sparse CUDA kernel on a real GPU against a float64
// reference, with small integers so every dtype and the fp32 accumulation are
// exact (the atomics only reorder exact sums). Returns 77 (skipped) without a GPU.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "sparsecore/act_layout.h"
#include "sparsecore/act.h"
#include "sparsecore/nm.h"
#include "sparsecore/spmm.h"
#include "test_harness.h"

using namespace sparsecore;

namespace {

uint16_t encode(float v, DType t) { return t == DType::kBFloat16 ? float_to_bf16(v) : float_to_fp16(v); }

void run(int64_t out, int64_t in, int64_t n, DType dt, bool scaled, std::mt19937& rng) {
  std::uniform_int_distribution<int> small(-4, 4);
  const int size = dtype_size(dt);
  std::vector<float> w(static_cast<size_t>(out * in)), x(static_cast<size_t>(n * in)), scale(static_cast<size_t>(in));
  for (float& v : w) v = float(small(rng));
  for (float& v : x) v = float(small(rng));
  for (float& v : scale) v = float(1 + rng() % 3);
  std::vector<uint8_t> wraw(w.size() * size), xraw(x.size() * size);
  for (size_t i = 0; i < w.size(); ++i) {
    if (dt == DType::kFloat32) memcpy(&wraw[i * 4], &w[i], 4);
    else { const uint16_t h = encode(w[i], dt); memcpy(&wraw[i * 2], &h, 2); }
  }
  for (size_t i = 0; i < x.size(); ++i) {
    if (dt == DType::kFloat32) memcpy(&xraw[i * 4], &x[i], 4);
    else { const uint16_t h = encode(x[i], dt); memcpy(&xraw[i * 2], &h, 2); }
  }
  std::vector<uint8_t> packed(size_t(act_packed_elements(out, in) * size));
  MatrixView wv{wraw.data(), out, in, in, 1, dt};
  CHECK(act_pack_weight(wv, packed.data()) == Status::kOk, "pack");
  void *d_w, *d_x, *d_y, *d_s;
  cudaMalloc(&d_w, packed.size());
  cudaMalloc(&d_x, xraw.size());
  cudaMalloc(&d_y, size_t(n * out) * 4);
  cudaMalloc(&d_s, scale.size() * 4);
  cudaMemcpy(d_w, packed.data(), packed.size(), cudaMemcpyHostToDevice);
  cudaMemcpy(d_x, xraw.data(), xraw.size(), cudaMemcpyHostToDevice);
  cudaMemcpy(d_s, scale.data(), scale.size() * 4, cudaMemcpyHostToDevice);
  const float threshold = scaled ? 4.5f : 1.5f;
  ActSelect sel;
  sel.threshold = threshold;
  sel.scale = scaled ? static_cast<const float*>(d_s) : nullptr;
  const Status s = act_linear_cuda(ActWeightView{out, in, d_w, dt}, sel, MatrixView{d_x, n, in, in, 1, dt},
                                   Epilogue{}, MatrixView{d_y, n, out, out, 1, DType::kFloat32}, nullptr);
  CHECK(s == Status::kOk, "status %d", int(s));
  std::vector<float> y(size_t(n * out));
  cudaMemcpy(y.data(), d_y, y.size() * 4, cudaMemcpyDeviceToHost);
  int bad = 0;
  for (int64_t r = 0; r < n; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double want = 0;
      for (int64_t j = 0; j < in; ++j) {
        const double xj = x[size_t(r * in + j)];
        if (std::fabs(xj) * (scaled ? scale[size_t(j)] : 1.0) > threshold) want += xj * w[size_t(o * in + j)];
      }
      bad += y[size_t(r * out + o)] != float(want);
    }
  CHECK(bad == 0, "%d wrong (out %lld in %lld n %lld dtype %d)", bad, (long long)out, (long long)in, (long long)n,
        int(dt));
  cudaFree(d_w);
  cudaFree(d_x);
  cudaFree(d_y);
  cudaFree(d_s);
}

}  // namespace

int main() {
  if (cuda_device_count() == 0) {
    std::printf("test_cuda_act: no GPU, skipped\n");
    return 77;
  }
  std::mt19937 rng(3);
  for (DType dt : {DType::kFloat32, DType::kBFloat16, DType::kFloat16})
    for (const auto& sh : {std::vector<int64_t>{1, 1, 1}, {33, 257, 1}, {4096, 1000, 4}, {70, 600, 7}})
      for (bool scaled : {false, true}) run(sh[0], sh[1], sh[2], dt, scaled, rng);
  return sparsecore::testing::finish("test_cuda_act");
}

// C++ microbenchmark of the CPU flash-attention kernel, no Python involved.
//   bench_attention            prefill 1k/4k (causal, window 512) and decode 16k, every ISA path
//   bench_attention --smoke    tiny sizes (ctest), checks the result is finite
// Prints median time and GFLOP/s of the blocks the position rules leave
// (4 * rows * visible keys * head dim) or GB/s of the K/V bytes (decode).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "sparsecore/attention.h"
#include "bench_timing.h"
#include "sparsecore/cpu_isa.h"

using namespace sparsecore;

namespace {

using bench::median_seconds;

AttnTensor tensor(std::vector<uint16_t>& buf, DType dt, int64_t h, int64_t l, int64_t d, std::mt19937& rng) {
  const int64_t n = h * l * d * (dt == DType::kFloat32 ? 2 : 1);
  buf.resize(size_t(n));
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  if (dt == DType::kFloat32) {
    for (int64_t i = 0; i < n / 2; ++i) {
      const float x = u(rng);
      memcpy(buf.data() + 2 * i, &x, sizeof x);
    }
  } else {
    for (uint16_t& x : buf) x = dt == DType::kBFloat16 ? float_to_bf16(u(rng)) : float_to_fp16(u(rng));
  }
  AttnTensor t;
  t.data = buf.data(), t.dtype = dt, t.batch = 1, t.heads = h, t.len = l, t.dim = d;
  t.stride_b = h * l * d, t.stride_h = l * d, t.stride_l = d;
  return t;
}

bool run(const char* what, int64_t hq, int64_t hkv, int64_t lq, int64_t lk, int64_t d, DType dt, int64_t window,
         bool smoke) {
  std::mt19937 rng(5);
  std::vector<uint16_t> qb, kb, vb, ob;
  const AttnTensor q = tensor(qb, dt, hq, lq, d, rng), k = tensor(kb, dt, hkv, lk, d, rng),
                   v = tensor(vb, dt, hkv, lk, d, rng), o = tensor(ob, dt, hq, lq, d, rng);
  AttnOptions opt;
  opt.scale = 1.f / std::sqrt(float(d));
  opt.window = window;
  opt.sinks = window ? 4 : 0;
  Status st = Status::kOk;
  const double s = median_seconds([&] { st = flash_attention_cpu(q, k, v, o, opt, nullptr, nullptr); }, smoke ? 2 : 5);
  // Visible (row, key) pairs under the causal / window rule.
  double pairs = 0;
  for (int64_t i = 0; i < lq; ++i) {
    const int64_t pos = lk - lq + i;
    pairs += window ? double(std::min<int64_t>(pos + 1, window)) : double(pos + 1);
  }
  const double flops = 4.0 * pairs * d * hq;
  const double bytes = 2.0 * double(hkv) * lk * d * dtype_size(dt);
  std::printf("%-12s %-8s hq=%-3lld hkv=%-2lld lq=%-5lld lk=%-6lld d=%-3lld %-8s %9.3f ms %8.1f GFLOP/s %6.1f GB/s\n",
              cpu_isa_name(cpu_isa_selected()), what, (long long)hq, (long long)hkv, (long long)lq, (long long)lk,
              (long long)d, dtype_name(dt), s * 1e3, flops / s / 1e9, bytes / s / 1e9);
  return st == Status::kOk;
}

}  // namespace

int main(int argc, char** argv) {
  const bool smoke = argc > 1 && std::strcmp(argv[1], "--smoke") == 0;
  bool ok = true;
  for (CpuIsa isa : {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512, CpuIsa::kAvx512Simde}) {
    if (!cpu_isa_set(isa)) continue;
    if (smoke) {
      ok &= run("prefill", 4, 2, 70, 70, 64, DType::kFloat32, 0, true);
      ok &= run("decode", 4, 2, 1, 600, 64, DType::kBFloat16, 0, true);
      continue;
    }
    if (isa == CpuIsa::kScalar || isa == CpuIsa::kAvx512Simde) continue;
    for (DType dt : {DType::kFloat32, DType::kBFloat16}) {
      ok &= run("prefill", 32, 8, 1024, 1024, 128, dt, 0, false);
      ok &= run("prefill", 9, 3, 1024, 1024, 64, dt, 0, false);
      ok &= run("window", 32, 8, 4096, 4096, 128, dt, 512, false);
      ok &= run("decode", 32, 8, 1, 16384, 128, dt, 0, false);
      ok &= run("decode", 9, 3, 1, 16384, 64, dt, 0, false);
    }
  }
  return ok ? 0 : 1;
}

// C++ microbenchmark of the CPU CSR/BSR kernels, no Python involved.
//   bench_spmm            full sizes (Llama-7B 4096x4096), every ISA path
//   bench_spmm --smoke    tiny sizes, checks results against the reference
// Prints median time, effective GB/s (bytes the format and B occupy) and
// GFLOP/s of the useful multiply-adds.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <vector>

#include "../../csrc/reference/spmm_reference.h"
#include "../../tests/cpp/random_sparse.h"
#include "bench_timing.h"
#include "sparsecore/cpu_isa.h"
#include "sparsecore/act.h"
#include "sparsecore/nm.h"
#include "sparsecore/spmm.h"

using namespace sparsecore;
using namespace sparsecore::testing;

namespace {

using bench::median_seconds;

bool run(int64_t m, int64_t k, int64_t n, double density, DType vt, bool smoke) {
  OwnedCsr a = random_csr(m, k, density, DType::kBFloat16, 42);
  a.chunks.assign(65, 0);
  plan_row_chunks(a.row_ptr.data(), m, 8, 64, a.chunks.data());
  const IndexType it = k <= 65536 ? IndexType::kUInt16 : IndexType::kInt32;
  const CsrView v = a.view(vt, it);
  OwnedDense b = random_dense(k * n, DType::kFloat32, 7);
  MatrixView bv{b.data(), k, n, n, 1, DType::kFloat32};
  std::vector<float> c(size_t(m * n));
  MatrixView cv{c.data(), m, n, n, 1, DType::kFloat32};
  const double s = median_seconds([&] { csr_spmm_cpu(v, bv, Epilogue{}, cv); }, smoke ? 3 : 15);
  const double bytes = double(v.nnz) * (dtype_size(vt) + index_size(it)) + 8.0 * (m + 1) + 4.0 * k * n + 4.0 * m * n;
  const double flops = 2.0 * double(v.nnz) * n;
  std::printf("%-12s csr %5lldx%-5lld n=%-4lld density=%.2f %-8s %9.3f ms %7.1f GB/s %7.1f GFLOP/s\n",
              cpu_isa_name(cpu_isa_selected()), (long long)m, (long long)k, (long long)n, density, dtype_name(vt),
              s * 1e3, bytes / s / 1e9, flops / s / 1e9);
  if (!smoke) return true;
  const auto ref = reference::csr_spmm(v, bv, nullptr);
  for (size_t i = 0; i < c.size(); ++i)
    if (c[i] != float(ref[i])) {
      std::printf("MISMATCH at %zu: %g vs %g\n", i, double(c[i]), ref[i]);
      return false;
    }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  const bool smoke = argc > 1 && std::strcmp(argv[1], "--smoke") == 0;
  bool ok = true;
  for (CpuIsa isa : {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512, CpuIsa::kAvx512Simde}) {
    if (!cpu_isa_set(isa)) continue;
    if (smoke) {
      ok &= run(96, 200, 1, 0.3, DType::kBFloat16, true);
      ok &= run(96, 200, 24, 0.3, DType::kFloat32, true);
      continue;
    }
    if (isa == CpuIsa::kAvx512Simde) continue;  // emulation: correctness only
    for (double density : {0.5, 0.1, 0.05}) {
      ok &= run(4096, 4096, 1, density, DType::kBFloat16, false);
      ok &= run(4096, 4096, 1, density, DType::kFloat32, false);
      ok &= run(4096, 4096, 8, density, DType::kFloat32, false);
      ok &= run(4096, 4096, 64, density, DType::kFloat32, false);
    }
  }
  return ok ? 0 : 1;
}

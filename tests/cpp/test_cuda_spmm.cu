// CUDA CSR SpMM against the float64 reference on a real GPU; exits 77 (ctest
// skip) when no GPU is visible.
#include <cuda_runtime.h>

#include <cstdio>
#include <vector>

#include "../../csrc/reference/spmm_reference.h"
#include "random_sparse.h"
#include "sparsecore/act.h"
#include "sparsecore/nm.h"
#include "sparsecore/spmm.h"
#include "test_harness.h"

using namespace sparsecore;
using namespace sparsecore::testing;

template <typename T>
T* to_device(const std::vector<T>& v) {
  T* p = nullptr;
  cudaMalloc(&p, v.size() * sizeof(T) + 16);
  cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice);
  return p;
}

int main() {
  if (cuda_device_count() == 0) {
    std::printf("test_cuda_spmm: no CUDA device, skipping\n");
    return 77;
  }
  cudaStream_t stream;
  cudaStreamCreate(&stream);
  uint32_t seed = 1;
  for (int64_t m : {1, 7, 130})
    for (int64_t k : {17, 333})
      // n: GEMV, multi-column GEMV (<= 16, or <= 64 with k-contiguous columns), SpMM.
      for (int64_t n : {1, 3, 8, 17, 40, 129})
        for (bool k_contiguous : {false, true})  // B row-major, or B = x^T as x @ W.T reads it
        for (DType vt : {DType::kFloat32, DType::kBFloat16, DType::kFloat16})
          for (IndexType it : {IndexType::kUInt16, IndexType::kInt32}) {
            OwnedCsr a = random_csr(m, k, 0.3, vt == DType::kFloat16 ? vt : DType::kBFloat16, seed++);
            OwnedDense b = random_dense(k * n, DType::kFloat32, seed++);
            CsrView h = a.view(vt, it);
            CsrView d = h;
            d.row_ptr = to_device(a.row_ptr);
            d.col_idx = it == IndexType::kUInt16 ? static_cast<const void*>(to_device(a.col16)) : to_device(a.col32);
            d.values = vt == DType::kFloat32 ? static_cast<const void*>(to_device(a.val32)) : to_device(a.val16);
            MatrixView hb = k_contiguous ? MatrixView{b.f32.data(), k, n, 1, k, DType::kFloat32}
                                         : MatrixView{b.f32.data(), k, n, n, 1, DType::kFloat32};
            MatrixView db = hb;
            db.data = to_device(b.f32);
            std::vector<float> out(size_t(m * n), 0.f);
            MatrixView dc{to_device(out), m, n, n, 1, DType::kFloat32};
            const Status s = csr_spmm_cuda(d, db, Epilogue{}, dc, stream);
            CHECK(s == Status::kOk, "status %d", int(s));
            cudaStreamSynchronize(stream);
            cudaMemcpy(out.data(), dc.data, out.size() * 4, cudaMemcpyDeviceToHost);
            const auto ref = reference::csr_spmm(h, hb, nullptr);
            int bad = 0;
            for (size_t i = 0; i < out.size(); ++i) bad += out[i] != float(ref[i]);
            CHECK(bad == 0, "m=%lld k=%lld n=%lld k_contiguous=%d vt=%s: %d wrong", (long long)m, (long long)k,
                  (long long)n, int(k_contiguous), dtype_name(vt), bad);
            cudaFree(const_cast<int64_t*>(d.row_ptr));
            cudaFree(const_cast<void*>(d.col_idx));
            cudaFree(const_cast<void*>(d.values));
            cudaFree(db.data);
            cudaFree(dc.data);
          }
  cudaStreamDestroy(stream);
  return finish("test_cuda_spmm");
}

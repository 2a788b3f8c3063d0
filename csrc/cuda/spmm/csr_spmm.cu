// CUDA CSR SpMM: one warp per output row. GEMV (n == 1): lanes split the
// row's nonzeros and reduce with shuffles; the multi-column GEMV does the same
// for 8 columns of B at a time (small n, or x @ W.T whose B = x^T has
// k-contiguous columns; csr_use_gemv_n). SpMM: the warp stages 32 nonzeros
// at a time in registers and broadcasts them with shuffles; each lane owns 4
// output columns and reads B with float4 loads when B is fp32 and contiguous.
// Contents are never trusted for addressing: a row's range is clamped into
// [0, nnz] and a column index outside [0, cols) contributes nothing, so a
// corrupted matrix cannot make a kernel read outside its arrays.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "../common/device.cuh"
#include "csr_schedule.h"
#include "sparsecore/dtypes.h"
#include "sparsecore/spmm.h"

namespace sparsecore::cuda {
namespace {

using Cfg = CsrSpmmConfig;

template <DType T> struct DeviceValue;
template <> struct DeviceValue<DType::kFloat32> {
  using Storage = float;
  __device__ static float to_float(float v) { return v; }
};
template <> struct DeviceValue<DType::kFloat16> {
  using Storage = __half;
  __device__ static float to_float(__half v) { return __half2float(v); }
};
template <> struct DeviceValue<DType::kBFloat16> {
  using Storage = __nv_bfloat16;
  __device__ static float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
};

template <IndexType I> struct DeviceIndex;
template <> struct DeviceIndex<IndexType::kUInt16> { using Storage = uint16_t; };
template <> struct DeviceIndex<IndexType::kInt32> { using Storage = int32_t; };

struct Args {
  int64_t rows;
  int64_t nnz;
  const int64_t* row_ptr;
  const void* col_idx;
  const void* values;
  MatrixView b;
  MatrixView c;
  const void* bias;
  DType bias_dtype;
};

__device__ __forceinline__ float warp_sum(float v) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// Row `row`'s nonzero range, clamped into [0, nnz] (row_ptr is validated on
// the host at construction, but the device copy is not re-read there).
__device__ __forceinline__ void row_range(const Args& a, int64_t row, int64_t* p0, int64_t* p1) {
  int64_t b = a.row_ptr[row], e = a.row_ptr[row + 1];
  b = b < 0 ? 0 : (b > a.nnz ? a.nnz : b);
  e = e < b ? b : (e > a.nnz ? a.nnz : e);
  *p0 = b;
  *p1 = e;
}

__device__ __forceinline__ float bias_of(const Args& a, int64_t row) {
  return a.bias ? load_as_float(a.bias, row, a.bias_dtype) : 0.f;
}

template <DType VT, IndexType IT>
__global__ void __launch_bounds__(Cfg::kThreads) csr_gemv_kernel(Args a) {
  using VS = typename DeviceValue<VT>::Storage;
  using IS = typename DeviceIndex<IT>::Storage;
  const int lane = threadIdx.x % Cfg::kWarpSize;
  const int64_t row = csr_row_of_warp(blockIdx.x, threadIdx.x / Cfg::kWarpSize, Cfg::kWarpsPerBlock);
  if (row >= a.rows) return;
  const VS* vals = static_cast<const VS*>(a.values);
  const IS* idx = static_cast<const IS*>(a.col_idx);
  int64_t p0, p1;
  row_range(a, row, &p0, &p1);
  float acc = 0.f;
  const int64_t steps = csr_gemv_steps(p0, p1);
  for (int64_t s = 0; s < steps; ++s) {
    const int64_t p = csr_gemv_element(p0, p1, lane, s);
    if (p >= 0) {
      const uint64_t col = uint64_t(int64_t(__ldg(idx + p)));
      if (col < uint64_t(a.b.rows))
        acc += DeviceValue<VT>::to_float(vals[p]) * load_as_float(a.b.data, int64_t(col) * a.b.row_stride, a.b.dtype);
    }
  }
  acc = warp_sum(acc);
  if (lane == 0) store_from_float(a.c.data, row * a.c.row_stride, a.c.dtype, acc + bias_of(a, row));
}

template <DType VT, IndexType IT>
__global__ void __launch_bounds__(Cfg::kThreads) csr_gemv_n_kernel(Args a) {
  using VS = typename DeviceValue<VT>::Storage;
  using IS = typename DeviceIndex<IT>::Storage;
  constexpr int kCols = Cfg::kGemvCols;
  const int lane = threadIdx.x % Cfg::kWarpSize;
  const int64_t row = csr_row_of_warp(blockIdx.x, threadIdx.x / Cfg::kWarpSize, Cfg::kWarpsPerBlock);
  if (row >= a.rows) return;
  const VS* vals = static_cast<const VS*>(a.values);
  const IS* idx = static_cast<const IS*>(a.col_idx);
  const int64_t j0 = int64_t(blockIdx.y) * kCols;
  const int cols = int(a.b.cols - j0 < kCols ? a.b.cols - j0 : kCols);
  int64_t p0, p1;
  row_range(a, row, &p0, &p1);
  float acc[kCols];
#pragma unroll
  for (int j = 0; j < kCols; ++j) acc[j] = 0.f;
  const int64_t steps = csr_gemv_steps(p0, p1);
  for (int64_t s = 0; s < steps; ++s) {
    const int64_t p = csr_gemv_element(p0, p1, lane, s);
    if (p < 0) continue;
    const uint64_t col = uint64_t(int64_t(__ldg(idx + p)));
    if (col >= uint64_t(a.b.rows)) continue;
    const float v = DeviceValue<VT>::to_float(vals[p]);
    const int64_t off = int64_t(col) * a.b.row_stride + j0 * a.b.col_stride;
#pragma unroll
    for (int j = 0; j < kCols; ++j)
      if (j < cols) acc[j] += v * load_as_float(a.b.data, off + j * a.b.col_stride, a.b.dtype);
  }
  const float bias = bias_of(a, row);
#pragma unroll
  for (int j = 0; j < kCols; ++j) {
    const float sum = warp_sum(acc[j]);
    if (lane == j && j < cols) store_from_float(a.c.data, row * a.c.row_stride + (j0 + j) * a.c.col_stride, a.c.dtype,
                                               sum + bias);
  }
}

template <DType VT, IndexType IT>
__global__ void __launch_bounds__(Cfg::kThreads) csr_spmm_kernel(Args a) {
  using VS = typename DeviceValue<VT>::Storage;
  using IS = typename DeviceIndex<IT>::Storage;
  const int lane = threadIdx.x % Cfg::kWarpSize;
  const int64_t row = csr_row_of_warp(blockIdx.x, threadIdx.x / Cfg::kWarpSize, Cfg::kWarpsPerBlock);
  if (row >= a.rows) return;
  const VS* vals = static_cast<const VS*>(a.values);
  const IS* idx = static_cast<const IS*>(a.col_idx);
  const int64_t n = a.b.cols;
  const int64_t col0 = csr_spmm_first_col(blockIdx.y, lane);
  const bool vec4 = a.b.dtype == DType::kFloat32 && a.b.col_stride == 1 && a.b.row_stride % 4 == 0 &&
                    (reinterpret_cast<uintptr_t>(a.b.data) % 16) == 0 && col0 + 4 <= n;
  float acc[Cfg::kColsPerLane] = {0.f, 0.f, 0.f, 0.f};
  int64_t p0, p1;
  row_range(a, row, &p0, &p1);
  for (int64_t base = p0; base < p1; base += Cfg::kWarpSize) {
    // Stage up to 32 nonzeros in registers, one per lane (an index outside
    // the matrix becomes a zero value at column 0).
    const int64_t mine = base + lane;
    float v = 0.f;
    int64_t k = 0;
    if (mine < p1) {
      const uint64_t col = uint64_t(int64_t(__ldg(idx + mine)));
      if (col < uint64_t(a.b.rows)) {
        v = DeviceValue<VT>::to_float(vals[mine]);
        k = int64_t(col);
      }
    }
    const int count = int(p1 - base < Cfg::kWarpSize ? p1 - base : Cfg::kWarpSize);
    for (int j = 0; j < count; ++j) {
      const float vj = __shfl_sync(0xffffffffu, v, j);
      const int64_t kj = __shfl_sync(0xffffffffu, k, j);
      // A zero (or an index outside the matrix) adds nothing; skipping it also
      // keeps a matrix with no columns from touching B at all.
      if (col0 >= n || vj == 0.f) continue;
      const int64_t off = kj * a.b.row_stride;
      if (vec4) {
        const float4 b4 = __ldg(reinterpret_cast<const float4*>(static_cast<const float*>(a.b.data) + off + col0));
        acc[0] += vj * b4.x;
        acc[1] += vj * b4.y;
        acc[2] += vj * b4.z;
        acc[3] += vj * b4.w;
      } else {
        for (int q = 0; q < Cfg::kColsPerLane; ++q)
          if (col0 + q < n) acc[q] += vj * load_as_float(a.b.data, off + (col0 + q) * a.b.col_stride, a.b.dtype);
      }
    }
  }
  const float bias = bias_of(a, row);
  for (int q = 0; q < Cfg::kColsPerLane; ++q)
    if (col0 + q < n)
      store_from_float(a.c.data, row * a.c.row_stride + (col0 + q) * a.c.col_stride, a.c.dtype, acc[q] + bias);
}

template <DType VT, IndexType IT>
cudaError_t launch(const Args& args, cudaStream_t stream) {
  const dim3 block(Cfg::kThreads);
  const int64_t grid_rows = csr_grid_rows(args.rows, Cfg::kWarpsPerBlock);
  if (args.b.cols == 1) {
    csr_gemv_kernel<VT, IT><<<dim3(unsigned(grid_rows)), block, 0, stream>>>(args);
  } else if (csr_use_gemv_n(args.b.cols, args.b.row_stride)) {
    csr_gemv_n_kernel<VT, IT><<<dim3(unsigned(grid_rows), unsigned(csr_gemv_n_tiles(args.b.cols))), block, 0, stream>>>(
        args);
  } else {
    const int64_t tiles = csr_grid_col_tiles(args.b.cols);
    if (tiles > 65535) return cudaErrorInvalidConfiguration;
    csr_spmm_kernel<VT, IT><<<dim3(unsigned(grid_rows), unsigned(tiles)), block, 0, stream>>>(args);
  }
  return cudaGetLastError();
}

template <DType VT>
cudaError_t launch_index(IndexType it, const Args& args, cudaStream_t stream) {
  return it == IndexType::kUInt16 ? launch<VT, IndexType::kUInt16>(args, stream)
                                  : launch<VT, IndexType::kInt32>(args, stream);
}

}  // namespace
}  // namespace sparsecore::cuda

namespace sparsecore {

Status csr_spmm_cuda(const CsrView& a, const MatrixView& b, const Epilogue& ep, const MatrixView& c, void* stream) {
  if (a.rows < 0 || a.cols < 0 || a.nnz < 0 || a.row_ptr == nullptr) return Status::kInvalidArgument;
  if (b.rows != a.cols || c.rows != a.rows || c.cols != b.cols) return Status::kInvalidArgument;
  if (c.rows == 0 || c.cols == 0) return Status::kOk;
  if (a.rows > int64_t(2147483647) * cuda::Cfg::kWarpsPerBlock) return Status::kUnsupported;
  if (Status s = cuda::check_current_device(); s != Status::kOk) return s;
  cuda::Args args{a.rows, a.nnz, a.row_ptr, a.col_idx, a.values, b, c, ep.bias, ep.bias_dtype};
  auto s = static_cast<cudaStream_t>(stream);
  cudaError_t err;
  switch (a.value_dtype) {
    case DType::kFloat32: err = cuda::launch_index<DType::kFloat32>(a.index_type, args, s); break;
    case DType::kFloat16: err = cuda::launch_index<DType::kFloat16>(a.index_type, args, s); break;
    default: err = cuda::launch_index<DType::kBFloat16>(a.index_type, args, s); break;
  }
  if (Status st = cuda::cuda_status(err, "csr_spmm launch"); st != Status::kOk) return st;
  return cuda::poison_nonfinite_columns(b, c, s);
}

}  // namespace sparsecore

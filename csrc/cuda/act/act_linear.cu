// Activation-sparse linear on the GPU. Each block takes one row of x and one
// chunk of input channels (act_cuda_grid): its threads threshold the chunk
// into a compact list in shared memory (ballot + prefix sums, channel order
// kept), then each warp walks the list for its tile of 32 output features,
// one lane per feature: a listed channel is one coalesced 64/128-byte read of
// its run in the packed weight (act_layout.h), an inactive one is never read. Partial
// sums go into an fp32 workspace (atomicAdd across chunks, so the last bits
// may differ between runs); a second kernel adds the bias and writes y in its
// dtype, NaN for a row of x that holds NaN or Inf. Rows go in launches of at
// most 65535 (grid.y), any number of them.
#include <cuda_runtime.h>

#include <type_traits>

#include "../common/device.cuh"
#include "sparsecore/act.h"
#include "sparsecore/dtypes.h"

namespace sparsecore::cuda {
namespace {

constexpr int kThreads = kActCudaWarps * 32;
constexpr int kPerThread = kActCudaChunk / kThreads;
static_assert(kActCudaChunk % kThreads == 0, "a chunk is whole passes of the block");

struct ActArgs {
  ActWeightView w;
  ActSelect sel;
  MatrixView x;
  float* work;     // rows x out fp32
  int* poisoned;   // rows: set when the row of x holds NaN or Inf
  int64_t row0;    // first row of this launch
};

template <DType WT>
__global__ void __launch_bounds__(kThreads) act_linear_kernel(ActArgs a) {
  __shared__ int32_t s_idx[kActCudaChunk];
  __shared__ float s_val[kActCudaChunk];
  __shared__ int s_count[kPerThread][kActCudaWarps];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t row = a.row0 + blockIdx.y;
  const int64_t c0 = int64_t(blockIdx.z) * kActCudaChunk;

  // Threshold the chunk: pass p covers channels c0 + p * kThreads + threadIdx.x.
  bool on[kPerThread];
  float xv[kPerThread];
  for (int p = 0; p < kPerThread; ++p) {
    const int64_t j = c0 + p * kThreads + threadIdx.x;
    on[p] = false;
    xv[p] = 0.f;
    if (j < a.w.in) {
      xv[p] = load_as_float(a.x.data, row * a.x.row_stride + j * a.x.col_stride, a.x.dtype);
      on[p] = act_selected(xv[p], a.sel.scale ? a.sel.scale[j] : 1.f, a.sel.threshold, a.sel.complement);
      if (blockIdx.x == 0 && !(xv[p] - xv[p] == 0.f)) atomicOr(a.poisoned + row, 1);
    }
    const unsigned ballot = __ballot_sync(0xffffffffu, on[p]);
    if (lane == 0) s_count[p][warp] = __popc(ballot);
  }
  __syncthreads();
  // Exclusive prefix over (pass, warp) in channel order; every thread
  // recomputes it from the few counts rather than synchronising again.
  int count = 0;
  for (int p = 0; p < kPerThread; ++p) {
    const unsigned ballot = __ballot_sync(0xffffffffu, on[p]);
    int before = count;
    for (int w = 0; w < warp; ++w) before += s_count[p][w];
    if (on[p]) {
      const int slot = before + __popc(ballot & ((1u << lane) - 1u));
      s_idx[slot] = int32_t(c0 + p * kThreads + threadIdx.x);
      s_val[slot] = xv[p];
    }
    for (int w = 0; w < kActCudaWarps; ++w) count += s_count[p][w];
  }
  __syncthreads();

  const int64_t tile = int64_t(blockIdx.x) * kActCudaWarps + warp;
  if (tile >= act_tiles(a.w.out) || count == 0) return;
  const int64_t o = tile * kActTile + lane;
  const int64_t stride = act_out_padded(a.w.out);
  const auto* base = static_cast<const typename std::conditional<WT == DType::kFloat32, float, uint16_t>::type*>(
                         a.w.values) + o;
  float acc = 0.f;
  for (int k = 0; k < count; ++k) {
    const auto raw = base[int64_t(s_idx[k]) * stride];
    float wv;
    if constexpr (WT == DType::kFloat32) wv = raw;
    else if constexpr (WT == DType::kBFloat16) wv = bf16_to_float(raw);
    else wv = fp16_to_float(raw);
    acc += s_val[k] * wv;
  }
  if (o < a.w.out) atomicAdd(a.work + row * a.w.out + o, acc);
}

__global__ void act_finish_kernel(const float* work, const int* poisoned, int64_t rows, int64_t out,
                                  const void* bias, DType bias_dtype, MatrixView y) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * out) return;
  const int64_t r = i / out, o = i % out;
  const float b = bias ? load_as_float(bias, o, bias_dtype) : 0.f;
  const float v = poisoned[r] ? __int_as_float(0x7fc00000) : work[i] + b;
  store_from_float(y.data, r * y.row_stride + o * y.col_stride, y.dtype, v);
}

}  // namespace
}  // namespace sparsecore::cuda

namespace sparsecore {

Status act_linear_cuda(const ActWeightView& w, const ActSelect& sel, const MatrixView& x, const Epilogue& ep,
                       const MatrixView& y, void* stream_ptr) {
  if (x.cols != w.in || y.rows != x.rows || y.cols != w.out || w.out < 0 || w.in < 0) return Status::kInvalidArgument;
  if (w.bitmap != nullptr) return Status::kInvalidArgument;  // weight-sparse runs are CPU-only
  if (y.rows == 0 || y.cols == 0) return Status::kOk;
  if (w.in > 0 && w.values == nullptr) return Status::kInvalidArgument;
  if (Status s = cuda::check_current_device(); s != Status::kOk) return s;
  auto stream = static_cast<cudaStream_t>(stream_ptr);
  const int64_t total = y.rows * w.out;
  // One allocation: the fp32 partial sums, then one poison flag per row.
  char* work = nullptr;
  const size_t work_bytes = size_t(total) * sizeof(float), bytes = work_bytes + size_t(y.rows) * sizeof(int);
  if (Status s = cuda::scratch_alloc(reinterpret_cast<void**>(&work), bytes, stream); s != Status::kOk) return s;
  float* partial = reinterpret_cast<float*>(work);
  int* poisoned = reinterpret_cast<int*>(work + work_bytes);
  Status status = cuda::cuda_status(cudaMemsetAsync(work, 0, bytes, stream), "cudaMemsetAsync");
  constexpr int64_t kMaxRowsPerLaunch = 65535;  // grid.y
  for (int64_t row0 = 0; status == Status::kOk && row0 < y.rows; row0 += kMaxRowsPerLaunch) {
    const int64_t rows = y.rows - row0 < kMaxRowsPerLaunch ? y.rows - row0 : kMaxRowsPerLaunch;
    const ActCudaGrid grid = act_cuda_grid(w.out, w.in, rows);
    if (grid.chunks == 0) break;
    if (grid.chunks > 65535 || grid.tile_blocks > 2147483647) {
      status = Status::kUnsupported;
      break;
    }
    const cuda::ActArgs args{w, sel, x, partial, poisoned, row0};
    const dim3 blocks(unsigned(grid.tile_blocks), unsigned(grid.rows), unsigned(grid.chunks));
    switch (w.value_dtype) {
      case DType::kFloat32: cuda::act_linear_kernel<DType::kFloat32><<<blocks, cuda::kThreads, 0, stream>>>(args); break;
      case DType::kBFloat16: cuda::act_linear_kernel<DType::kBFloat16><<<blocks, cuda::kThreads, 0, stream>>>(args); break;
      case DType::kFloat16: cuda::act_linear_kernel<DType::kFloat16><<<blocks, cuda::kThreads, 0, stream>>>(args); break;
    }
    status = cuda::cuda_status(cudaGetLastError(), "act_linear launch");
  }
  if (status == Status::kOk) {
    const int threads = 256;
    cuda::act_finish_kernel<<<unsigned((total + threads - 1) / threads), threads, 0, stream>>>(
        partial, poisoned, y.rows, w.out, ep.bias, ep.bias_dtype, y);
    status = cuda::cuda_status(cudaGetLastError(), "act_finish launch");
  }
  cudaFreeAsync(work, stream);
  return status;
}

}  // namespace sparsecore

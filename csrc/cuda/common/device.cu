#include <atomic>
#include <cstdio>

#include "device.cuh"
#include "sparsecore/dtypes.h"

namespace sparsecore::cuda {
namespace {

// Grid-stride over every entry of b with the unit-stride dimension fastest, so
// a warp reads consecutive addresses (x @ W.T passes b = x^T: k-contiguous
// columns); a non-finite entry flags its column. The first version gave each
// thread 256 entries of one column in sequence: one active lane per block at
// n = 1, 21 us per call on an H200 (longer than cuBLAS's whole GEMV).
__global__ void mark_nonfinite(MatrixView b, int* flags) {
  const bool k_fastest = b.row_stride <= b.col_stride;
  const int64_t total = b.rows * b.cols;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t k = k_fastest ? i % b.rows : i / b.cols;
    const int64_t j = k_fastest ? i / b.rows : i % b.cols;
    const float v = load_as_float(b.data, k * b.row_stride + j * b.col_stride, b.dtype);
    if (!(v - v == 0.f)) atomicOr(flags + j, 1);  // NaN - NaN and Inf - Inf are NaN
  }
}

__global__ void write_nan_columns(MatrixView c, const int* flags) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= c.rows * c.cols) return;
  const int64_t r = i / c.cols, j = i % c.cols;
  if (flags[j]) store_from_float(c.data, r * c.row_stride + j * c.col_stride, c.dtype, __int_as_float(0x7fc00000));
}

}  // namespace

Status cuda_status(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return Status::kOk;
  char msg[200];
  std::snprintf(msg, sizeof msg, "%s: %s", what, cudaGetErrorString(err));
  set_error_detail(msg);
  return err == cudaErrorInvalidConfiguration ? Status::kUnsupported : Status::kCudaError;
}

Status check_current_device() {
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) {
    return cuda_status(cudaGetLastError(), "cudaGetDevice");
  }
  return cuda_device_supported(device) ? Status::kOk : Status::kUnsupported;
}

Status scratch_alloc(void** ptr, size_t bytes, cudaStream_t stream) {
  // One flag per device: raising the threshold twice is harmless, so no lock is needed.
  constexpr int kMaxDevices = 64;
  static std::atomic<bool> kept[kMaxDevices] = {};
  int device = 0;
  if (cudaGetDevice(&device) == cudaSuccess && device >= 0 && device < kMaxDevices && !kept[device]) {
    cudaMemPool_t pool = nullptr;
    uint64_t threshold = 0;
    if (cudaDeviceGetDefaultMemPool(&pool, device) == cudaSuccess &&
        cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold) == cudaSuccess &&
        threshold < kScratchKeepBytes) {
      uint64_t keep = kScratchKeepBytes;  // never lowers what another library (torch's async allocator) set
      cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
    }
    cudaGetLastError();  // a pool that cannot be tuned still allocates
    kept[device] = true;
  }
  if (cudaMallocAsync(ptr, bytes, stream) != cudaSuccess) {
    cuda_status(cudaGetLastError(), "cudaMallocAsync");
    return Status::kOutOfMemory;
  }
  return Status::kOk;
}

Status poison_nonfinite_columns(const MatrixView& b, const MatrixView& c, cudaStream_t stream) {
  if (b.cols == 0 || b.rows == 0 || c.rows == 0) return Status::kOk;
  int* flags = nullptr;
  if (Status s = scratch_alloc(reinterpret_cast<void**>(&flags), size_t(b.cols) * sizeof(int), stream);
      s != Status::kOk)
    return s;
  Status s = cuda_status(cudaMemsetAsync(flags, 0, size_t(b.cols) * sizeof(int), stream), "cudaMemsetAsync");
  if (s == Status::kOk) {
    constexpr int64_t kMaxBlocks = 4096;  // enough to fill any GPU; the rest is the grid-stride loop
    const int64_t blocks = (b.rows * b.cols + 255) / 256;
    mark_nonfinite<<<unsigned(blocks < kMaxBlocks ? blocks : kMaxBlocks), 256, 0, stream>>>(b, flags);
    s = cuda_status(cudaGetLastError(), "mark_nonfinite launch");
  }
  if (s == Status::kOk) {
    const int64_t total = c.rows * c.cols;
    write_nan_columns<<<unsigned((total + 255) / 256), 256, 0, stream>>>(c, flags);
    s = cuda_status(cudaGetLastError(), "write_nan_columns launch");
  }
  cudaFreeAsync(flags, stream);
  return s;
}

}  // namespace sparsecore::cuda

namespace sparsecore {

bool cuda_compiled() { return true; }

const char* cuda_archs_compiled() { return SPARSECORE_CUDA_ARCHS; }

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

bool cuda_device_supported(int device) {
  int major = 0, minor = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess) {
    cuda::cuda_status(cudaGetLastError(), "cudaDeviceGetAttribute");
    return false;
  }
  if (major >= 8) return true;
  char msg[200];
  std::snprintf(msg, sizeof msg,
                "GPU %d has compute capability %d.%d; the sparsecore CUDA kernels need 8.0 or newer (Ampere+)",
                device, major, minor);
  set_error_detail(msg);
  return false;
}

}  // namespace sparsecore

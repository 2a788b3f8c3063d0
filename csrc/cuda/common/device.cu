#include <cstdio>

#include "device.cuh"
#include "sparsecore/dtypes.h"

namespace sparsecore::cuda {
namespace {

// One thread per (column, 256-row chunk) of b: any non-finite entry flags its column.
__global__ void mark_nonfinite(MatrixView b, int* flags) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= b.cols) return;
  const int64_t k0 = int64_t(blockIdx.y) * 256, k1 = k0 + 256 < b.rows ? k0 + 256 : b.rows;
  bool bad = false;
  for (int64_t k = k0; k < k1; ++k) {
    const float v = load_as_float(b.data, k * b.row_stride + j * b.col_stride, b.dtype);
    bad |= !(v - v == 0.f);  // NaN - NaN and Inf - Inf are NaN
  }
  if (bad) atomicOr(flags + j, 1);
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

Status poison_nonfinite_columns(const MatrixView& b, const MatrixView& c, cudaStream_t stream) {
  if (b.cols == 0 || b.rows == 0 || c.rows == 0) return Status::kOk;
  int* flags = nullptr;
  if (cudaMallocAsync(reinterpret_cast<void**>(&flags), size_t(b.cols) * sizeof(int), stream) != cudaSuccess)
    return cuda_status(cudaGetLastError(), "cudaMallocAsync");
  Status s = cuda_status(cudaMemsetAsync(flags, 0, size_t(b.cols) * sizeof(int), stream), "cudaMemsetAsync");
  const int64_t chunks = (b.rows + 255) / 256;
  if (s == Status::kOk && chunks > 65535) s = Status::kUnsupported;
  if (s == Status::kOk) {
    const dim3 grid(unsigned((b.cols + 127) / 128), unsigned(chunks));
    mark_nonfinite<<<grid, 128, 0, stream>>>(b, flags);
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

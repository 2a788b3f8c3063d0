// What every CUDA entry point does around its launch: check that the current
// device can run the kernels (compute capability 8.0+, set_error_detail
// otherwise), report a failed CUDA call with cudaGetErrorString, and apply
// the NaN rule of the matmuls (a non-finite column of B gives a NaN column of C).
#pragma once
#include <cuda_runtime.h>

#include "sparsecore/core.h"

namespace sparsecore::cuda {

// kOk, or kUnsupported (with the reason in error_detail()) when the current
// device is older than sm_80.
Status check_current_device();

// kOk for cudaSuccess; otherwise records cudaGetErrorString(err) (prefixed
// by `what`) and returns kCudaError (kUnsupported for a launch configuration
// this GPU cannot take).
Status cuda_status(cudaError_t err, const char* what);

// Stream-ordered scratch (cudaMallocAsync on the device's default pool). The
// default pool returns its memory to the driver at every synchronisation
// (release threshold 0), so a decode loop that syncs each step would map fresh
// pages on every call (~0.1 ms); the first call per device raises the threshold
// to kScratchKeepBytes so the few KiB the kernels ask for stay in the pool.
// kOk, or kOutOfMemory with the CUDA error recorded.
inline constexpr uint64_t kScratchKeepBytes = uint64_t(64) << 20;
Status scratch_alloc(void** ptr, size_t bytes, cudaStream_t stream);

// After a matmul on `stream`: every column j of c (rows x n) whose column of
// b (k x n, any strides, device memory) holds NaN or Inf becomes NaN.
Status poison_nonfinite_columns(const MatrixView& b, const MatrixView& c, cudaStream_t stream);

}  // namespace sparsecore::cuda

// Status codes returned by every kernel entry point. Kernels never throw: the
// bindings turn a bad status into a Python exception.
#pragma once

namespace sparsecore {

enum class Status : int {
  kOk = 0,
  kInvalidArgument = 1,  // a size, stride, dtype or pointer the kernel cannot use
  kUnsupported = 2,      // a valid request this build or this hardware cannot run
  kCudaError = 3,        // a CUDA runtime call or launch failed (error_detail() says which)
  kOutOfMemory = 4,
  kNonFinite = 5,        // a format's values or a threshold hold NaN or Inf where they must not
  kInvalidIndex = 6,     // index or plan contents point outside the matrix (seen while reading them)
  kInternalError = 7,    // an unexpected C++ exception, caught at the entry point
};

static inline const char* status_name(Status s) {
  switch (s) {
    case Status::kOk: return "ok";
    case Status::kInvalidArgument: return "invalid argument";
    case Status::kUnsupported: return "unsupported";
    case Status::kCudaError: return "CUDA error";
    case Status::kOutOfMemory: return "out of memory";
    case Status::kNonFinite: return "NaN or Inf where a finite value is required";
    case Status::kInvalidIndex:
      return "an index or plan entry points outside the matrix (were the format's tensors modified after "
             "validation?)";
    case Status::kInternalError: return "internal error";
  }
  return "unknown status";
}

// Details of the last failure on this thread (for example cudaGetErrorString
// of a failed launch, or the compute capability a kernel needs); "" if none.
// Entry points that fail set it; the bindings append it to the message.
const char* error_detail();
void set_error_detail(const char* detail);

}  // namespace sparsecore

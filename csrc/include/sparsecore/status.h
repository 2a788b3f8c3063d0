// Status codes returned by every kernel entry point. Kernels never throw: the
// bindings turn a bad status into a Python exception.
#pragma once

namespace sparsecore {

enum class Status : int {
  kOk = 0,
  kInvalidArgument = 1,  // a size, stride, dtype or pointer the kernel cannot use
  kUnsupported = 2,      // a valid request this build or this hardware cannot run
  kCudaError = 3,        // a CUDA runtime call or launch failed
  kOutOfMemory = 4,
  kNonFinite = 5,        // a dense input or bias holds NaN or Inf
};

inline const char* status_name(Status s) {
  switch (s) {
    case Status::kOk: return "ok";
    case Status::kInvalidArgument: return "invalid argument";
    case Status::kUnsupported: return "unsupported";
    case Status::kCudaError: return "CUDA error";
    case Status::kOutOfMemory: return "out of memory";
    case Status::kNonFinite: return "input contains NaN or Inf";
  }
  return "unknown status";
}

}  // namespace sparsecore

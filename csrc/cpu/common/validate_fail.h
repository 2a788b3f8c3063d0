// The validators' way of reporting a problem: a message naming it, and
// kInvalidArgument. Baseline code.
#pragma once
#include <cstdio>

#include "sparsecore/status.h"

namespace sparsecore {

template <typename... Args>
Status validation_failure(char* msg, int len, const char* fmt, Args... args) {
  if (msg && len > 0) std::snprintf(msg, size_t(len), fmt, args...);
  return Status::kInvalidArgument;
}

}  // namespace sparsecore

// cpu::guarded (see thread_pool.h). Baseline code only.
#pragma once
#include <exception>
#include <new>

namespace sparsecore::cpu {

template <typename F>
Status guarded(F&& body) noexcept {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return Status::kOutOfMemory;
  } catch (...) {
    return Status::kInternalError;
  }
}

}  // namespace sparsecore::cpu

// run_parts: the dispatchers' way of running kernel parts on the pool. Baseline
// code only (it uses the standard library; the per-ISA TUs must not).
#pragma once
#include <atomic>
#include <cstdint>

#include "../thread_pool.h"

namespace sparsecore::cpu {

// Runs fn(i) for i in [0, parts) on the pool when parallel (else inline) and
// returns kInvalidIndex if any part reported bad index contents (fn returned
// false), else the pool's status (a task that threw).
template <typename Fn>
Status run_parts(int64_t parts, bool parallel, Fn&& fn) {
  std::atomic<bool> bad{false};
  auto body = [&](int64_t i) {
    if (!fn(i)) bad.store(true, std::memory_order_relaxed);
  };
  Status s = Status::kOk;
  if (parallel) {
    s = parallel_for(parts, body);
  } else {
    for (int64_t i = 0; i < parts; ++i) body(i);
  }
  if (s != Status::kOk) return s;
  return bad.load() ? Status::kInvalidIndex : Status::kOk;
}

}  // namespace sparsecore::cpu

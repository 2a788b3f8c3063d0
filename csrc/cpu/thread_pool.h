// A small persistent thread pool for the CPU kernels (no OpenMP: torch ships
// its own OpenMP runtime, and two spinning runtimes in one process fight).
#pragma once
#include <cstdint>
#include <type_traits>

namespace sparsecore::cpu {

// Runs fn(ctx, task) for task in [0, num_tasks) on up to cpu_num_threads()
// threads, the caller included; returns when all tasks are done. Tasks are
// handed out dynamically, so uneven tasks balance. Calls from several host
// threads at once are safe: a call that finds the pool busy runs inline.
void parallel_for(int64_t num_tasks, void (*fn)(void* ctx, int64_t task), void* ctx);

template <typename F>
void parallel_for(int64_t num_tasks, F&& f) {
  using Fn = std::remove_reference_t<F>;
  parallel_for(
      num_tasks, [](void* ctx, int64_t task) { (*static_cast<Fn*>(ctx))(task); },
      const_cast<void*>(static_cast<const void*>(&f)));
}

}  // namespace sparsecore::cpu

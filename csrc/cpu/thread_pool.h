// A small persistent thread pool for the CPU kernels (no OpenMP: torch ships
// its own OpenMP runtime, and two spinning runtimes in one process fight).
#pragma once
#include <cstdint>
#include <type_traits>

#include "sparsecore/status.h"

namespace sparsecore::cpu {

// Runs fn(ctx, task) for task in [0, num_tasks) on up to cpu_num_threads()
// threads, the caller included; returns when all tasks are done. Tasks are
// handed out dynamically, so uneven tasks balance.
//  - A task that throws does not take the process down: the remaining tasks
//    still run, and the call returns kOutOfMemory (std::bad_alloc) or
//    kInternalError (anything else) instead of kOk.
//  - Calls from several host threads at once are safe, and so is a call from
//    inside a task (nested): a call that finds the pool busy runs inline.
//  - After fork() the child gets a fresh pool (the parent's workers do not
//    exist there), so kernels work in forked workers (multiprocessing, DataLoader).
Status parallel_for(int64_t num_tasks, void (*fn)(void* ctx, int64_t task), void* ctx);

template <typename F>
Status parallel_for(int64_t num_tasks, F&& f) {
  using Fn = std::remove_reference_t<F>;
  return parallel_for(
      num_tasks, [](void* ctx, int64_t task) { (*static_cast<Fn*>(ctx))(task); },
      const_cast<void*>(static_cast<const void*>(&f)));
}

// Runs body() and turns an escaping C++ exception into a Status: kernel entry
// points are called from C and Python and must never throw.
template <typename F>
Status guarded(F&& body) noexcept;

}  // namespace sparsecore::cpu

#include "thread_pool_guard.h"

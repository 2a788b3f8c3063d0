// The CPU thread pool: a task that throws becomes a Status (the process lives
// on and the pool keeps working), nested calls from inside a task run inline,
// and every task runs exactly once, whatever the spin policy.
#include <atomic>
#include <new>
#include <stdexcept>
#include <vector>

#include "cpu/thread_pool.h"
#include "sparsecore/cpu_isa.h"
#include "test_harness.h"

using namespace sparsecore;

int main() {
  cpu_set_num_threads(4);
  for (int64_t tasks : {1, 2, 7, 100}) {
    std::vector<std::atomic<int>> runs(static_cast<size_t>(tasks));
    for (auto& r : runs) r = 0;
    const Status s = cpu::parallel_for(tasks, [&](int64_t t) { ++runs[size_t(t)]; });
    CHECK(s == Status::kOk, "status %d", int(s));
    for (int64_t t = 0; t < tasks; ++t) CHECK(runs[size_t(t)] == 1, "task %lld ran %d times", (long long)t, int(runs[size_t(t)]));
  }
  // Throwing tasks: the other tasks still run; the call reports the failure.
  std::atomic<int> done{0};
  Status s = cpu::parallel_for(50, [&](int64_t t) {
    if (t == 13) throw std::bad_alloc();
    ++done;
  });
  CHECK(s == Status::kOutOfMemory, "bad_alloc gave status %d", int(s));
  CHECK(done == 49, "%d of 49 other tasks ran", int(done));
  s = cpu::parallel_for(50, [&](int64_t t) {
    if (t % 7 == 3) throw std::runtime_error("boom");
  });
  CHECK(s == Status::kInternalError, "runtime_error gave status %d", int(s));
  // The pool still works after failures, and a task may call parallel_for (inline).
  std::atomic<int64_t> inner{0};
  s = cpu::parallel_for(8, [&](int64_t) {
    const Status n = cpu::parallel_for(10, [&](int64_t) { ++inner; });
    if (n != Status::kOk) inner = -1000000;
  });
  CHECK(s == Status::kOk && inner == 80, "nested: status %d, %lld inner tasks", int(s), (long long)inner.load());
  // guarded: an entry point's exceptions become statuses.
  CHECK(cpu::guarded([]() -> Status { throw std::bad_alloc(); }) == Status::kOutOfMemory, "guarded bad_alloc");
  CHECK(cpu::guarded([]() -> Status { throw 42; }) == Status::kInternalError, "guarded other");
  CHECK(cpu::guarded([] { return Status::kOk; }) == Status::kOk, "guarded ok");
  // Spin settings and holds: every spin length (none, the default, held workers
  // that never sleep between jobs) runs every task once; holds nest and never
  // go below zero.
  for (int spin : {0, 200, 5000}) {
    cpu_set_spin_us(spin);
    CHECK(cpu_spin_us() == spin, "spin %d read back as %d", spin, cpu_spin_us());
    for (int held = 0; held < 2; ++held) {
      if (held) cpu_hold_threads(true);
      for (int rep = 0; rep < 50; ++rep) {
        std::atomic<int64_t> sum{0};
        s = cpu::parallel_for(37, [&](int64_t t) { sum += t; });
        CHECK(s == Status::kOk && sum == 37 * 36 / 2, "spin %d held %d: status %d sum %lld", spin, held, int(s),
              (long long)sum.load());
      }
      if (held) cpu_hold_threads(false);
    }
  }
  cpu_hold_threads(true);
  cpu_hold_threads(true);
  CHECK(cpu_thread_holds() == 2, "two holds read as %d", cpu_thread_holds());
  for (int i = 0; i < 3; ++i) cpu_hold_threads(false);
  CHECK(cpu_thread_holds() == 0, "holds after three releases: %d", cpu_thread_holds());
  cpu_set_spin_us(-1);
  CHECK(cpu_spin_us() >= 0, "default spin %d", cpu_spin_us());
  cpu_set_num_threads(0);
  return sparsecore::testing::finish("test_thread_pool");
}

#include "thread_pool.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <algorithm>
#include <new>
#include <thread>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

#include "sparsecore/cpu_isa.h"

namespace sparsecore::cpu {
namespace {

struct Job {
  void (*fn)(void*, int64_t) = nullptr;
  void* ctx = nullptr;
  int64_t num_tasks = 0;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
  std::atomic<int> failure{0};  // a Status code other than kOk once a task threw
};

// True on a pool worker and inside run(): a nested parallel_for runs inline.
thread_local bool t_in_pool = false;

class Pool;
Pool* g_pool = nullptr;

class Pool {
 public:
  static Pool& get() {
    // Leaked on purpose: worker threads must not be joined during static
    // destruction at interpreter exit.
    static const bool once = [] {
      g_pool = new Pool();
#if defined(__unix__) || defined(__APPLE__)
      pthread_atfork(nullptr, nullptr, [] {
        // In the child only the forking thread exists; the old pool's workers,
        // mutexes and condition variable may be in any state. Start over (the
        // old object is abandoned, not destroyed: its members may be locked).
        const int threads = g_pool->threads();
        g_pool = new Pool();
        g_pool->threads_.store(threads);
        t_in_pool = false;
      });
#endif
      return true;
    }();
    (void)once;
    return *g_pool;
  }

  int threads() const { return threads_.load(); }
  void set_threads(int n) {
    if (n <= 0) n = default_threads();
    threads_.store(n);
  }

  Status run(int64_t num_tasks, void (*fn)(void*, int64_t), void* ctx) {
    Job job;
    job.fn = fn;
    job.ctx = ctx;
    job.num_tasks = num_tasks;
    const int want = threads();
    bool expected = false;
    // One job at a time; a second caller (another host thread, or a task of
    // the running job) does its tasks itself.
    if (want <= 1 || num_tasks <= 1 || t_in_pool || !busy_.compare_exchange_strong(expected, true)) {
      work(job);
      return Status(job.failure.load());
    }
    t_in_pool = true;
    int helpers = 0;
    try {
      ensure_workers(want - 1);
      helpers = int(std::min<int64_t>(int64_t(workers_), num_tasks - 1));
    } catch (...) {
      helpers = 0;  // no thread could be started: the caller does everything
    }
    if (helpers > 0) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        job_ = &job;
        helpers_wanted_ = helpers;
        generation_.fetch_add(1, std::memory_order_release);
      }
      cv_.notify_all();
    }
    work(job);
    if (helpers > 0) {
      // Withdraw the job first so no late worker can pick it up, then wait for
      // the helpers that did to finish and let go of it (it lives on our stack).
      {
        std::lock_guard<std::mutex> lock(mutex_);
        job_ = nullptr;
        helpers_wanted_ = 0;
      }
      while (job.done.load(std::memory_order_acquire) < num_tasks || active_.load(std::memory_order_acquire) != 0)
        std::this_thread::yield();
    }
    t_in_pool = false;
    busy_.store(false, std::memory_order_release);
    return Status(job.failure.load());
  }

 private:
  Pool() { threads_.store(default_threads()); }

  static int default_threads() {
    if (const char* env = std::getenv("SPARSECORE_NUM_THREADS")) {
      int n = std::atoi(env);
      if (n > 0) return n;
    }
    unsigned hw = std::thread::hardware_concurrency();
    return hw ? int(hw) : 1;
  }

  static void work(Job& job) noexcept {
    for (;;) {
      const int64_t t = job.next.fetch_add(1, std::memory_order_relaxed);
      if (t >= job.num_tasks) return;
      try {
        job.fn(job.ctx, t);
      } catch (const std::bad_alloc&) {
        job.failure.store(int(Status::kOutOfMemory));
      } catch (...) {
        job.failure.store(int(Status::kInternalError));
      }
      job.done.fetch_add(1, std::memory_order_release);
    }
  }

  // Starts workers up to n (only from run(), which holds busy_).
  void ensure_workers(int n) {
    while (workers_ < n) {
      std::thread([this] { worker_loop(); }).detach();
      ++workers_;
    }
  }

  void worker_loop() {
    t_in_pool = true;
    uint64_t seen = generation_.load(std::memory_order_acquire);
    for (;;) {
      // Spin briefly: decode steps call back within microseconds, and a
      // condition-variable wake-up costs tens of them.
      auto spin_until = std::chrono::steady_clock::now() + std::chrono::microseconds(200);
      while (generation_.load(std::memory_order_acquire) == seen && std::chrono::steady_clock::now() < spin_until) {
      }
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      seen = generation_.load(std::memory_order_acquire);
      if (job_ == nullptr || helpers_wanted_ <= 0) continue;
      --helpers_wanted_;
      Job* job = job_;
      active_.fetch_add(1, std::memory_order_acq_rel);
      lock.unlock();
      work(*job);
      active_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }

  std::atomic<int> threads_{1};
  std::atomic<bool> busy_{false};
  std::mutex mutex_;
  std::condition_variable cv_;
  std::atomic<uint64_t> generation_{0};
  Job* job_ = nullptr;
  int helpers_wanted_ = 0;
  std::atomic<int> active_{0};
  int workers_ = 0;
};

}  // namespace

Status parallel_for(int64_t num_tasks, void (*fn)(void*, int64_t), void* ctx) {
  if (num_tasks <= 0) return Status::kOk;
  return Pool::get().run(num_tasks, fn, ctx);
}

}  // namespace sparsecore::cpu

namespace sparsecore {
int cpu_num_threads() { return cpu::Pool::get().threads(); }
void cpu_set_num_threads(int n) { cpu::Pool::get().set_threads(n); }
}  // namespace sparsecore

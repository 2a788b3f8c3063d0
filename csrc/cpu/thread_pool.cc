#include "thread_pool.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <algorithm>
#include <new>
#include <string>
#include <thread>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

#include "host_openmp.h"
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
        const int spin = g_pool->spin_us();
        const bool own = g_pool->own_only_.load();
        g_pool = new Pool();
        g_pool->threads_.store(threads);
        g_pool->spin_us_.store(spin);
        g_pool->own_only_.store(own);
        // The host OpenMP runtime's workers did not survive the fork either, and
        // libgomp does not rebuild its team: the child uses our pool only.
        g_pool->forked_ = true;
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
  int spin_us() const { return spin_us_.load(std::memory_order_relaxed); }
  // Nested holds (one per model forward in flight); never below zero.
  void hold(bool on) {
    if (on) {
      hold_.fetch_add(1, std::memory_order_acq_rel);
    } else {
      int h = hold_.load(std::memory_order_acquire);
      while (h > 0 && !hold_.compare_exchange_weak(h, h - 1, std::memory_order_acq_rel)) {
      }
    }
  }
  int holds() const { return hold_.load(std::memory_order_acquire); }
  void set_spin_us(int us) { spin_us_.store(us < 0 ? default_spin_us() : us, std::memory_order_relaxed); }
  void set_own_only(bool own) { own_only_.store(own, std::memory_order_relaxed); }
  // The process's OpenMP runtime when parallel work goes there (see host_openmp.h).
  HostParallelFn host() const {
    return own_only_.load(std::memory_order_relaxed) || forked_ ? nullptr : host_openmp_parallel();
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
    if (want <= 1 || num_tasks <= 1 || t_in_pool) {
      work(job);
      return Status(job.failure.load());
    }
    if (HostParallelFn omp = host()) {
      // Several host threads may each run a team at once; a nested call runs inline.
      omp(&host_team_body, &job, unsigned(std::min<int64_t>(want, num_tasks)), 0);
      return Status(job.failure.load());
    }
    if (!busy_.compare_exchange_strong(expected, true)) {
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
  Pool() {
    threads_.store(default_threads());
    spin_us_.store(default_spin_us());
    own_only_.store(default_own_only());
  }

  static bool default_own_only() {
    const char* env = std::getenv("SPARSECORE_THREAD_BACKEND");
    return env != nullptr && std::string(env) == "own";
  }

  static void host_team_body(void* job) {
    t_in_pool = true;
    work(*static_cast<Job*>(job));
    t_in_pool = false;
  }

  static int default_spin_us() {
    if (const char* env = std::getenv("SPARSECORE_SPIN_US")) {
      const int us = std::atoi(env);
      if (us >= 0) return us;
    }
    return 200;
  }

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
      // Spin before sleeping: decode steps call back within microseconds, and a
      // condition-variable wake-up costs tens of them. spin_us_ bounds the spin;
      // while a model forward is in flight (hold_ > 0, set by forward hooks) the
      // worker spins until the next job. After the first microseconds the spin
      // yields, so a runnable thread (torch's own ops) gets the core. Measured:
      // docs/results.md, "The thread pool's spin".
      const auto start = std::chrono::steady_clock::now();
      const auto spin_until = start + std::chrono::microseconds(spin_us());
      const auto pause_until = start + std::chrono::microseconds(20);
      for (;;) {
        if (generation_.load(std::memory_order_acquire) != seen) break;
        const auto now = std::chrono::steady_clock::now();
        if (now >= spin_until && hold_.load(std::memory_order_acquire) <= 0) break;
        if (now >= pause_until) std::this_thread::yield();
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
  std::atomic<int> spin_us_{200};
  std::atomic<int> hold_{0};
  std::atomic<bool> own_only_{false};  // never the host OpenMP runtime
  bool forked_ = false;                // this pool was made in a fork() child
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
int cpu_spin_us() { return cpu::Pool::get().spin_us(); }
void cpu_set_spin_us(int us) { cpu::Pool::get().set_spin_us(us); }
void cpu_hold_threads(bool on) { cpu::Pool::get().hold(on); }
int cpu_thread_holds() { return cpu::Pool::get().holds(); }
const char* cpu_thread_backend() { return cpu::Pool::get().host() ? "openmp" : "own"; }
void cpu_set_thread_backend_own(bool own) { cpu::Pool::get().set_own_only(own); }
}  // namespace sparsecore

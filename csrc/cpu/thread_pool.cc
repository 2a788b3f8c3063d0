#include "thread_pool.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#include "sparsecore/cpu_isa.h"

namespace sparsecore::cpu {
namespace {

struct Job {
  void (*fn)(void*, int64_t) = nullptr;
  void* ctx = nullptr;
  int64_t num_tasks = 0;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
};

class Pool {
 public:
  static Pool& get() {
    // Leaked on purpose: worker threads must not be joined during static
    // destruction at interpreter exit.
    static Pool* pool = new Pool();
    return *pool;
  }

  int threads() const { return threads_.load(); }
  void set_threads(int n) {
    if (n <= 0) n = default_threads();
    threads_.store(n);
  }

  void run(int64_t num_tasks, void (*fn)(void*, int64_t), void* ctx) {
    const int want = threads();
    std::unique_lock<std::mutex> busy(run_mutex_, std::try_to_lock);
    if (want <= 1 || num_tasks <= 1 || !busy.owns_lock()) {
      for (int64_t t = 0; t < num_tasks; ++t) fn(ctx, t);
      return;
    }
    ensure_workers(want - 1);
    Job job;
    job.fn = fn;
    job.ctx = ctx;
    job.num_tasks = num_tasks;
    const int helpers = int(std::min<int64_t>(want - 1, num_tasks - 1));
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &job;
      helpers_wanted_ = helpers;
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    work(job);
    // Withdraw the job first so no late worker can pick it up, then wait for
    // the helpers that did to finish and let go of it (it lives on our stack).
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = nullptr;
    }
    while (job.done.load(std::memory_order_acquire) < num_tasks ||
           active_.load(std::memory_order_acquire) != 0) {
      std::this_thread::yield();
    }
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

  static void work(Job& job) {
    for (;;) {
      const int64_t t = job.next.fetch_add(1, std::memory_order_relaxed);
      if (t >= job.num_tasks) return;
      job.fn(job.ctx, t);
      job.done.fetch_add(1, std::memory_order_release);
    }
  }

  void ensure_workers(int n) {
    while (int(workers_.size()) < n) {
      workers_.emplace_back([this] { worker_loop(); });
      workers_.back().detach();
    }
  }

  void worker_loop() {
    uint64_t seen = generation_.load(std::memory_order_acquire);
    for (;;) {
      // Spin briefly: decode steps call back within microseconds, and a
      // condition-variable wake-up costs tens of them.
      auto spin_until = std::chrono::steady_clock::now() + std::chrono::microseconds(200);
      while (generation_.load(std::memory_order_acquire) == seen &&
             std::chrono::steady_clock::now() < spin_until) {
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
  std::mutex run_mutex_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::atomic<uint64_t> generation_{0};
  Job* job_ = nullptr;
  int helpers_wanted_ = 0;
  std::atomic<int> active_{0};
  std::vector<std::thread> workers_;
};

}  // namespace

void parallel_for(int64_t num_tasks, void (*fn)(void*, int64_t), void* ctx) {
  if (num_tasks <= 0) return;
  Pool::get().run(num_tasks, fn, ctx);
}

}  // namespace sparsecore

namespace sparsecore {
int cpu_num_threads() { return cpu::Pool::get().threads(); }
void cpu_set_num_threads(int n) { cpu::Pool::get().set_threads(n); }
}  // namespace sparsecore

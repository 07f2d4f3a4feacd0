// A persistent thread pool: workers spin briefly after each job (decode issues hundreds of
// small jobs per token, and waking a sleeping thread costs tens of microseconds), then sleep
// on a condition variable. The calling thread takes part in every job.
//
// Each JavaScript thread (the main thread, every worker) owns its own pool, made and destroyed by
// the N-API layer: Node unloads an addon when the last environment that loaded it ends, so a
// pool's threads must be joined by then (a thread still spinning in unloaded code crashes the
// process), and per-call scratch must never be shared between two JS threads running at once.
#include <sched.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define QVL_PAUSE() _mm_pause()
#else
#define QVL_PAUSE() sched_yield()
#endif
#define QVL_YIELD() sched_yield()
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "kernels.h"

namespace qvl {
namespace {

constexpr int kScratchSlots = 6;
constexpr auto kSpin = std::chrono::microseconds(200);
constexpr int kSpinPauses = 2000;  // ~20-80 µs of pause before yielding

struct Scratch {
  void* p[kScratchSlots] = {};
  size_t size[kScratchSlots] = {};
  ~Scratch() {
    for (int i = 0; i < kScratchSlots; i++) free(p[i]);
  }
};

thread_local bool tls_in_pool_task = false;

/** One thread's share of a job's tasks: claimed front to back (on its own cache line). */
struct alignas(64) TaskRange {
  std::atomic<int64_t> next{0};
  int64_t end = 0;
};

/**
 * One job: its tasks are claimed through `ranges` and counted through `finished`. Jobs alternate
 * between two slots; a worker announces itself in `active` and then checks `gen`, so a slot is
 * only rewritten once no late worker can still read it.
 *
 * Each thread owns a contiguous range of the tasks and claims them in order, then takes what is
 * left of the others' ranges. Consecutive GEMV tasks hold adjacent weight rows, so a thread's
 * reads stay one stream the hardware prefetcher follows from task to task; with the tasks dealt
 * out alternately, each task of 256 KiB started a new stream (a C++ copy of the 1-token bf16
 * GEMV on 2 Zen 5 cores, weights from DRAM: 42.6 GB/s with 256 KiB tasks dealt out, 50.8 with
 * each thread's half read in order; a plain read: 54 either way).
 */
struct Job {
  TaskFn fn = nullptr;
  void* ctx = nullptr;
  int64_t nTasks = 0;
  std::vector<TaskRange> ranges;  // one per pool thread
  std::atomic<int64_t> finished{0};
  std::atomic<int> active{0};
  std::atomic<uint64_t> gen{0};  // 0: being rewritten
};

}  // namespace

class Pool {
 public:
  explicit Pool(int n) : nThreads_(n < 1 ? 1 : n), scratch_(nThreads_) {
    for (Job& j : jobs_) j.ranges = std::vector<TaskRange>(size_t(nThreads_));
    for (int i = 1; i < nThreads_; i++) workers_.emplace_back([this, i] { workerLoop(i); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_ = true;
      gen_.fetch_add(1, std::memory_order_seq_cst);
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }

  int threads() const { return nThreads_; }

  void run(int64_t nTasks, TaskFn fn, void* ctx) {
    if (nTasks <= 0) return;
    if (nThreads_ == 1 || nTasks == 1 || tls_in_pool_task) {
      bool was = tls_in_pool_task;
      tls_in_pool_task = true;
      for (int64_t t = 0; t < nTasks; t++) fn(ctx, t, 0);
      tls_in_pool_task = was;
      return;
    }
    const uint64_t g = gen_.load(std::memory_order_relaxed) + 1;
    Job& job = jobs_[g & 1];
    job.gen.store(0, std::memory_order_seq_cst);
    while (job.active.load(std::memory_order_seq_cst) != 0) QVL_PAUSE();  // a late worker leaving
    job.fn = fn;
    job.ctx = ctx;
    job.nTasks = nTasks;
    const int64_t nr = int64_t(job.ranges.size());
    for (int64_t r = 0; r < nr; r++) {
      job.ranges[r].next.store(r * nTasks / nr, std::memory_order_relaxed);
      job.ranges[r].end = (r + 1) * nTasks / nr;
    }
    job.finished.store(0, std::memory_order_relaxed);
    job.gen.store(g, std::memory_order_release);
    {
      std::lock_guard<std::mutex> lk(m_);
      gen_.store(g, std::memory_order_seq_cst);
    }
    if (sleepers_.load(std::memory_order_seq_cst) > 0) cv_.notify_all();
    tls_in_pool_task = true;
    work(job, 0);
    tls_in_pool_task = false;
    // The caller waits for the tasks, not for the workers: one that was not scheduled in time
    // (a loaded machine) simply finds nothing left to claim. Spin briefly, then give the core
    // away between checks so that a preempted worker holding a task can finish it.
    for (int spins = 0; job.finished.load(std::memory_order_acquire) < nTasks; spins++) {
      if (spins < kSpinPauses) QVL_PAUSE();
      else QVL_YIELD();
    }
  }

  void* scratch(int thread, size_t bytes, int slot) {
    Scratch& s = scratch_[thread];
    if (s.size[slot] < bytes) {
      free(s.p[slot]);
      size_t sz = (bytes + 63) & ~size_t(63);
      s.p[slot] = aligned_alloc(64, sz);
      s.size[slot] = s.p[slot] ? sz : 0;
    }
    return s.p[slot];
  }

 private:
  static void work(Job& job, int thread) {
    const int nr = int(job.ranges.size());
    for (int i = 0; i < nr; i++) {
      TaskRange& r = job.ranges[(thread + i) % nr];
      int64_t t;
      while ((t = r.next.fetch_add(1, std::memory_order_relaxed)) < r.end) {
        job.fn(job.ctx, t, thread);
        job.finished.fetch_add(1, std::memory_order_release);
      }
    }
  }

  void workerLoop(int id);

  const int nThreads_;
  std::vector<Scratch> scratch_;
  std::vector<std::thread> workers_;
  std::mutex m_;
  std::condition_variable cv_;
  std::atomic<uint64_t> gen_{0};
  std::atomic<int> sleepers_{0};
  Job jobs_[2];
  bool stop_ = false;
};

namespace {
// The pool that parallel_for uses on this thread: the JS thread's own (pool_use), or, on a pool
// thread, the pool it belongs to (tasks ask it for their scratch).
thread_local Pool* tls_pool = nullptr;
}  // namespace

void Pool::workerLoop(int id) {
  tls_pool = this;
  tls_in_pool_task = true;
  uint64_t seen = 0;  // the generation at construction: a job posted before this thread starts still runs
  for (;;) {
    auto start = std::chrono::steady_clock::now();
    int spins = 0;
    while (gen_.load(std::memory_order_acquire) == seen) {
      // pause-spin first (the next job of a decode step comes within microseconds), then
      // yield between checks so that spinning never starves other work on a busy machine
      if (++spins < kSpinPauses) QVL_PAUSE();
      else QVL_YIELD();
      if (spins % 64 == 0 && std::chrono::steady_clock::now() - start > kSpin) {
        std::unique_lock<std::mutex> lk(m_);
        sleepers_.fetch_add(1, std::memory_order_seq_cst);
        cv_.wait(lk, [&] { return gen_.load(std::memory_order_seq_cst) != seen; });
        sleepers_.fetch_sub(1, std::memory_order_seq_cst);
        break;
      }
    }
    seen = gen_.load(std::memory_order_acquire);
    if (stop_) return;
    Job& job = jobs_[seen & 1];
    job.active.fetch_add(1, std::memory_order_seq_cst);
    if (job.gen.load(std::memory_order_seq_cst) == seen) work(job, id);  // else: already replaced
    job.active.fetch_sub(1, std::memory_order_seq_cst);
  }
}

Pool* pool_new(int threads) { return new Pool(threads); }

void pool_delete(Pool* p) {
  if (tls_pool == p) tls_pool = nullptr;
  delete p;
}

void pool_use(Pool* p) { tls_pool = p; }

namespace {
Pool& current() {
  // The addon binds a pool to every JS thread before it runs a kernel; anything else is a bug.
  if (!tls_pool) {
    fputs("qvl native: a kernel ran on a thread without a pool\n", stderr);
    abort();
  }
  return *tls_pool;
}
}  // namespace

void parallel_for(int64_t nTasks, TaskFn fn, void* ctx) { current().run(nTasks, fn, ctx); }

int pool_threads() { return current().threads(); }

void* pool_scratch(int thread, size_t bytes, int slot) { return current().scratch(thread, bytes, slot); }

}  // namespace qvl

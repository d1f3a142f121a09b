#include "native_work.hpp"

#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <memory>
#include <thread>

namespace gilstat::demo {

uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

uint32_t current_tid() { return static_cast<uint32_t>(syscall(SYS_gettid)); }

void spin_until(uint64_t deadline_ns) {
  while (now_ns() < deadline_ns) {
  }
}

void sleep_until(uint64_t deadline_ns) {
  timespec ts{static_cast<time_t>(deadline_ns / 1000000000u),
              static_cast<long>(deadline_ns % 1000000000u)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
  }
}

uint64_t sum_buffer(size_t n, uint64_t passes) {
  std::unique_ptr<uint32_t[]> buf(new uint32_t[n]);
  for (size_t i = 0; i < n; ++i) buf[i] = static_cast<uint32_t>(i * 2654435761u);
  uint64_t sum = 0;
  for (uint64_t p = 0; p < passes; ++p) {
    // Mixing in the pass number keeps the compiler from hoisting the inner
    // loop out of the outer one: every pass is real work.
    const uint32_t salt = static_cast<uint32_t>(p);
    for (size_t i = 0; i < n; ++i) sum += buf[i] ^ salt;
  }
  return sum;
}

namespace {

// Bounded MPMC queue after Dmitry Vyukov: one CAS per push or pop, no lock.
// Each cell's sequence number says whether it is free for the producer of
// round `pos` or holds a value for the consumer of that round.
class MpmcQueue {
 public:
  explicit MpmcQueue(size_t capacity_pow2)
      : cells_(new Cell[capacity_pow2]), mask_(capacity_pow2 - 1) {
    for (size_t i = 0; i < capacity_pow2; ++i) cells_[i].seq.store(i, std::memory_order_relaxed);
  }

  bool push(uint64_t value) {
    size_t pos = tail_.load(std::memory_order_relaxed);
    for (;;) {
      Cell& c = cells_[pos & mask_];
      const auto dif =
          static_cast<intptr_t>(c.seq.load(std::memory_order_acquire)) - static_cast<intptr_t>(pos);
      if (dif == 0) {
        if (tail_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
          c.value = value;
          c.seq.store(pos + 1, std::memory_order_release);
          return true;
        }
      } else if (dif < 0) {
        return false;  // full
      } else {
        pos = tail_.load(std::memory_order_relaxed);
      }
    }
  }

  bool pop(uint64_t* value) {
    size_t pos = head_.load(std::memory_order_relaxed);
    for (;;) {
      Cell& c = cells_[pos & mask_];
      const auto dif = static_cast<intptr_t>(c.seq.load(std::memory_order_acquire)) -
                       static_cast<intptr_t>(pos + 1);
      if (dif == 0) {
        if (head_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
          *value = c.value;
          c.seq.store(pos + mask_ + 1, std::memory_order_release);
          return true;
        }
      } else if (dif < 0) {
        return false;  // empty
      } else {
        pos = head_.load(std::memory_order_relaxed);
      }
    }
  }

 private:
  struct Cell {
    std::atomic<size_t> seq;
    uint64_t value;
  };
  std::unique_ptr<Cell[]> cells_;
  size_t mask_;
  alignas(64) std::atomic<size_t> tail_{0};
  alignas(64) std::atomic<size_t> head_{0};
};

struct alignas(64) WorkerTally {
  uint32_t tid = 0;
  uint64_t pushed = 0, popped = 0, pushed_sum = 0, popped_sum = 0;
};

}  // namespace

AtomicsResult run_atomics(unsigned threads, double seconds) {
  MpmcQueue queue(1024);
  alignas(64) std::atomic<uint64_t> counter{0};
  std::vector<WorkerTally> tally(threads);
  const uint64_t deadline = now_ns() + static_cast<uint64_t>(seconds * 1e9);
  std::vector<std::thread> pool;
  for (unsigned w = 0; w < threads; ++w) {
    pool.emplace_back([&, w] {
      WorkerTally& t = tally[w];
      t.tid = current_tid();
      uint64_t next = (static_cast<uint64_t>(w) << 48) + 1;
      for (uint64_t i = 1;; ++i) {
        counter.fetch_add(1, std::memory_order_relaxed);
        if (queue.push(next)) {
          t.pushed++;
          t.pushed_sum += next++;
        }
        uint64_t v;
        if (queue.pop(&v)) {
          t.popped++;
          t.popped_sum += v;
        }
        if (i % 1024 == 0 && now_ns() >= deadline) break;
      }
    });
  }
  for (auto& t : pool) t.join();

  AtomicsResult r;
  uint64_t pushed_sum = 0, popped_sum = 0;
  for (const auto& t : tally) {
    r.tids.push_back(t.tid);
    r.pushed += t.pushed;
    r.popped += t.popped;
    pushed_sum += t.pushed_sum;
    popped_sum += t.popped_sum;
  }
  for (uint64_t v; queue.pop(&v);) {
    r.popped++;
    popped_sum += v;
  }
  r.increments = counter.load();
  r.checksum_ok = r.pushed == r.popped && pushed_sum == popped_sum;
  return r;
}

}  // namespace gilstat::demo

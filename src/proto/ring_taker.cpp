#include "proto/ring_taker.hpp"

#include <algorithm>
#include <cmath>

#include "common/clock.hpp"
#include "common/poll_wait.hpp"

namespace gilstat::proto {

void FillPacer::took(uint64_t fullest, uint64_t now_ns) {
  if (last_ns_ && now_ns > last_ns_) {
    const double dt_us = static_cast<double>(now_ns - last_ns_) / 1e3;
    const double rate = static_cast<double>(fullest) / dt_us;
    per_us_ = std::max(rate, per_us_ * std::exp2(-dt_us / 500'000.0));
  }
  last_ns_ = now_ns;
}

std::chrono::microseconds FillPacer::pause() const {
  constexpr double kLongest = 5000, kShortest = 100;  // µs
  if (per_us_ <= 0) return std::chrono::microseconds{static_cast<int64_t>(kLongest)};
  const double us = std::clamp(capacity_ / 4.0 / per_us_, kShortest, kLongest);
  return std::chrono::microseconds{static_cast<int64_t>(us)};
}

RingTaker::RingTaker(ShmRegion& region) : region_(region) {
  thread_ = std::thread([this] { run(); });
}

RingTaker::~RingTaker() { stop(); }

void RingTaker::stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void RingTaker::run() {
  // Threads inherit their creator's nice value, but a capture may start
  // this one before its own thread asked for a better one.
  prefer_draining_thread();
  FillPacer pacer(region_.layout().layout.ring_capacity);
  std::unique_lock lock(mu_);
  while (!stop_) {
    lock.unlock();
    uint64_t fullest = 0;
    try {
      fullest = region_.take();
    } catch (const std::exception&) {
      // Corrupt (the consumer's next drain() throws it) or out of memory:
      // the consumer's own drain() still takes what it can.
      return;
    }
    pacer.took(fullest, monotonic_ns());
    lock.lock();
    wake_.wait_for(lock, pacer.pause(), [this] { return stop_; });
  }
}

}  // namespace gilstat::proto

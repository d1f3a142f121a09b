// Keeping the rings empty at any GIL rate.  A thread cycling the GIL as fast
// as it can fills a ring of 32,768 records in a few tens of milliseconds; the thread
// that hands events to the aggregator and the recording may be busy longer
// than that (encoding, compressing, a long-hold stack, a screen of `top`).
// RingTaker is a thread that does nothing but copy the rings out
// (ShmRegion::take) as fast as they fill; the consumer's drain() then hands
// over what it copied.  FillPacer decides how long to wait between takes.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

#include "proto/shm_region.hpp"

namespace gilstat::proto {

// The wait before the next take: 5 ms while the rings fill slowly; when a
// thread fills its ring fast, only until the fullest ring would be a quarter
// full at the highest recent fill rate (which halves every half second, so a
// thread that pauses for a few takes does not stretch the wait to where its
// ring overflows when it speeds up again), down to 0.1 ms.
class FillPacer {
 public:
  explicit FillPacer(uint32_t ring_capacity) : capacity_(ring_capacity) {}
  // After a take that found `fullest` records in the fullest ring.
  void took(uint64_t fullest, uint64_t now_ns);
  std::chrono::microseconds pause() const;

 private:
  uint32_t capacity_;
  uint64_t last_ns_ = 0;
  double per_us_ = 0;  // the fullest ring's records per µs, recent maximum
};

class RingTaker {
 public:
  // Starts taking from `region` at once; it must outlive this object.
  explicit RingTaker(ShmRegion& region);
  ~RingTaker();  // stop()
  RingTaker(const RingTaker&) = delete;
  RingTaker& operator=(const RingTaker&) = delete;
  // Stops and joins the thread.  A region found corrupt stops it too (the
  // next drain() throws that).
  void stop();

 private:
  void run();

  ShmRegion& region_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace gilstat::proto

// One thread's view of one GIL, rebuilt from that thread's events in its own
// ring order (research §2.5): where its time went between its first and its
// last event.  Durations stay in raw clock units here.
#pragma once

#include <cstdint>

#include "gilstat/protocol.hpp"
#include "report/histogram.hpp"

namespace gilstat::report {

struct ThreadTimes {
  // held + wait + released == lifetime unless an anomaly lost time: that
  // equality is the check that the state machine below accounts for every
  // tick, so lifetime is measured separately (last ts - first ts).
  uint64_t lifetime = 0;
  uint64_t held = 0;
  uint64_t wait = 0;
  uint64_t released = 0;
  uint64_t acquisitions = 0;
  uint64_t forced_handoffs = 0;
  uint64_t anomalies = 0;
  Histogram wait_hist;
  Histogram hold_hist;
};

class ThreadTimeline {
 public:
  enum class State : uint8_t { None, Waiting, Holding, Released };

  void add(proto::EventKind kind, uint64_t ts);

  // The totals as if the recording ended at window_end: a hold or a wait
  // still open is closed there and counted, extending the lifetime.  Does
  // not change the timeline, so a live view may call it repeatedly.
  ThreadTimes finish(uint64_t window_end) const;

  State state() const { return state_; }

 private:
  // Time since the current state began; a clock running backwards (it
  // should not) gives 0 and an anomaly rather than a huge unsigned value.
  uint64_t elapsed(uint64_t ts);

  State state_ = State::None;
  uint64_t since_ = 0;
  uint64_t first_ts_ = 0;
  uint64_t last_ts_ = 0;
  ThreadTimes t_;
};

}  // namespace gilstat::report

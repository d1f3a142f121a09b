// One thread's view of one GIL, rebuilt from that thread's events in its own
// ring order (docs/gil-internals.md, "Reconstruction rules"): where its time went between its first and its
// last event.  Durations stay in raw clock units here.
#pragma once

#include <cstdint>

#include "gilstat/protocol.hpp"
#include "report/histogram.hpp"

namespace gilstat::report {

// The part of a recording a report covers, in raw clock units, both ends
// inclusive.  The default covers everything.  A wait or hold that crosses
// an edge is cut there and counted once; acquisitions are the Acquire events
// inside plus a hold already running at `lo`.
struct TimeWindow {
  uint64_t lo = 0;
  uint64_t hi = UINT64_MAX;

  bool whole() const { return lo == 0 && hi == UINT64_MAX; }
  bool contains(uint64_t ts) const { return ts >= lo && ts <= hi; }
  bool overlaps(uint64_t from, uint64_t to) const { return from <= hi && to >= lo; }
  uint64_t clip(uint64_t from, uint64_t to) const {
    const uint64_t a = from > lo ? from : lo;
    const uint64_t b = to < hi ? to : hi;
    return b > a ? b - a : 0;
  }
};

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
  bool in_window = true;  // the thread's lifetime touches the window
  Histogram wait_hist;
  Histogram hold_hist;
};

class ThreadTimeline {
 public:
  enum class State : uint8_t { None, Waiting, Holding, Released };

  // A stretch of time the thread spent in one state, [begin, end] in raw
  // units, as closed by add() or finish() (for timelines, e.g. export).
  struct Span {
    State state = State::None;  // None: add() closed no span
    uint64_t begin = 0;
    uint64_t end = 0;
  };

  ThreadTimeline() = default;
  explicit ThreadTimeline(const TimeWindow& window) : window_(window) {}

  // Returns the span the event closed, if any.
  Span add(proto::EventKind kind, uint64_t ts);

  // The totals as if the recording ended at window_end: a hold or a wait
  // still open is closed there and counted, extending the lifetime.  Does
  // not change the timeline, so a live view may call it repeatedly.
  ThreadTimes finish(uint64_t window_end) const;
  // The span finish(window_end) would close (None when none is open).
  Span open_span(uint64_t window_end) const;

  State state() const { return state_; }

 private:
  // Adds [since_, ts) spent in `s` to t, cut to the window.  A clock running
  // backwards (it should not) counts 0 and an anomaly rather than a huge
  // unsigned value.
  void account(ThreadTimes& t, State s, uint64_t ts, bool count_anomaly) const;

  TimeWindow window_;
  State state_ = State::None;
  uint64_t since_ = 0;
  uint64_t first_ts_ = 0;
  uint64_t last_ts_ = 0;
  ThreadTimes t_;
};

}  // namespace gilstat::report

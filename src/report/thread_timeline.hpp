// One thread's view of one GIL, rebuilt from that thread's events in its own
// ring order (docs/gil-internals.md, "Reconstruction rules"): where its time went between its first
// and its last event.  Durations stay in raw clock units here.
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

  // The state the thread was in when the probe armed the GIL, as known from
  // outside (the GIL's holder, a thread asleep in take_gil): it counts from
  // the arm until the thread's first state change, and is ignored once the
  // thread has one (its events then say what it was doing, see at_arm()).
  void declare_at_arm(State s) { declared_ = s; }

  // What the thread was doing from the arm (arm_ts) to its first state
  // change (or to window_end while it has none): a thread's first event
  // tells it, as only a thread already holding can release and only one
  // already inside take_gil can acquire without beginning a wait.  A first
  // WaitAbort means it was in take_gil for something else: released.
  // `begin` = arm_ts; d = the stretch's length, cut to the window.
  struct ArmStretch {
    State state = State::None;  // None: the thread's time starts at its first event
    uint64_t begin = 0;
    uint64_t end = 0;
    uint64_t d = 0;
  };
  ArmStretch at_arm(uint64_t arm_ts, uint64_t window_end) const;

  // The totals as if the recording ended at window_end: a hold or a wait
  // still open is closed there and counted, extending the lifetime; with
  // arm_ts, the stretch at_arm() finds counts too.  Does not change the
  // timeline, so a live view may call it repeatedly.
  ThreadTimes finish(uint64_t window_end, uint64_t arm_ts = 0) const;
  // The span finish(window_end) would close (None when none is open).
  Span open_span(uint64_t window_end) const;

  State state() const { return state_; }
  // Still in the state it was declared in at the arm: no state change since.
  bool only_declared() const { return state_ == State::None && declared_ != State::None; }

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
  proto::EventKind first_kind_{};  // the first state-changing event's, 0 before
  State declared_ = State::None;
  ThreadTimes t_;
};

}  // namespace gilstat::report

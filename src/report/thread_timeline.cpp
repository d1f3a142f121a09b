#include "report/thread_timeline.hpp"

#include <algorithm>

namespace gilstat::report {

using proto::EventKind;

void ThreadTimeline::account(ThreadTimes& t, State s, uint64_t ts, bool count_anomaly) const {
  if (ts < since_) {
    if (count_anomaly) ++t.anomalies;
    ts = since_;
  }
  if (!window_.overlaps(since_, ts)) return;
  const uint64_t d = window_.clip(since_, ts);
  switch (s) {
    case State::Waiting:
      t.wait += d;
      t.wait_hist.add(d);
      break;
    case State::Holding:
      t.held += d;
      t.hold_hist.add(d);
      // A hold already running when the window opens is one of its
      // acquisitions (its Acquire event lies before the window).
      if (since_ < window_.lo) ++t.acquisitions;
      break;
    case State::Released:
      t.released += d;
      break;
    case State::None:
      break;
  }
}

ThreadTimeline::Span ThreadTimeline::add(EventKind kind, uint64_t ts) {
  const bool changes_state = kind == EventKind::WaitBegin || kind == EventKind::Acquire ||
                             kind == EventKind::Release || kind == EventKind::WaitAbort;
  // The lifetime starts with the first event that puts the thread in a state;
  // a stray ForcedHandoff before it has no state to account its time to.
  if (state_ == State::None && changes_state) {
    first_ts_ = last_ts_ = since_ = ts;
    first_kind_ = kind;
  }
  if (state_ != State::None || changes_state) last_ts_ = std::max(last_ts_, ts);

  // The transitions of docs/gil-internals.md, "Reconstruction rules".
  // Anything not listed below adds no time, counts an anomaly and simply
  // enters the state the event implies.
  // A thread's first event is never an anomaly: after an attach a thread is
  // met mid-wait or mid-hold, and its lifetime starts at that event.
  State next = state_;
  State closed = State::None;  // the state whose time ends here, if counted
  switch (kind) {
    case EventKind::WaitBegin:
      next = State::Waiting;
      // From Released: the released stretch ends.  From Waiting: a second
      // lock(mutex) without an acquisition means the first one was not a
      // wait for the GIL (a discarded lock/unlock pair), so that stretch of
      // time was spent released.  From None: the natural first event.
      if (state_ == State::Released || state_ == State::Waiting)
        closed = State::Released;
      else if (state_ != State::None)
        ++t_.anomalies;
      break;
    case EventKind::Acquire:
      next = State::Holding;
      if (window_.contains(ts)) ++t_.acquisitions;
      if (state_ == State::Waiting)
        closed = State::Waiting;
      else if (state_ != State::None)
        ++t_.anomalies;
      break;
    case EventKind::Release:
      next = State::Released;
      if (state_ == State::Holding)
        closed = State::Holding;
      else if (state_ != State::None)
        ++t_.anomalies;
      break;
    case EventKind::WaitAbort:
      next = State::Released;
      if (state_ == State::Waiting)
        closed = State::Released;
      else if (state_ != State::None)
        ++t_.anomalies;
      break;
    case EventKind::ForcedHandoff:
      if (window_.contains(ts)) ++t_.forced_handoffs;
      return {};  // no state change, and no anomaly whatever the state
    case EventKind::DropRequest:
      return {};  // counted per GIL
    default:
      ++t_.anomalies;  // unknown kind: corrupt input
      return {};
  }
  Span span;
  if (closed != State::None) {
    account(t_, closed, ts, true);
    span = {closed, since_, std::max(ts, since_)};
  }
  state_ = next;
  since_ = ts;
  return span;
}

ThreadTimeline::Span ThreadTimeline::open_span(uint64_t window_end) const {
  if (state_ == State::Released) return {State::Released, since_, std::max(last_ts_, since_)};
  if (state_ == State::Holding || state_ == State::Waiting)
    return {state_, since_, std::max({window_end, last_ts_, since_})};
  return {};
}

ThreadTimeline::ArmStretch ThreadTimeline::at_arm(uint64_t arm_ts, uint64_t window_end) const {
  ArmStretch a;
  if (arm_ts == 0) return a;
  if (state_ == State::None) {
    // No state change yet: what was declared runs on to the window's end.
    if (declared_ != State::Holding && declared_ != State::Waiting) return a;
    a.state = declared_;
    a.end = std::max(window_end, arm_ts);
  } else {
    if (first_ts_ <= arm_ts) return a;
    switch (first_kind_) {
      case EventKind::Release:
        a.state = State::Holding;
        break;
      case EventKind::Acquire:
        a.state = State::Waiting;
        break;
      case EventKind::WaitAbort:
        a.state = State::Released;
        break;
      default:
        return a;
    }
    a.end = first_ts_;
  }
  a.begin = arm_ts;
  a.d = window_.clip(a.begin, a.end);
  return a;
}

ThreadTimes ThreadTimeline::finish(uint64_t window_end, uint64_t arm_ts) const {
  const ArmStretch arm = at_arm(arm_ts, window_end);
  if (state_ == State::None) {
    ThreadTimes t = t_;
    if (arm.state == State::None) {
      t.in_window = false;
      return t;
    }
    (arm.state == State::Holding ? t.held : t.wait) += arm.d;
    if (arm.d) (arm.state == State::Holding ? t.hold_hist : t.wait_hist).add(arm.d);
    t.lifetime = arm.d;
    t.in_window = window_.overlaps(arm.begin, arm.end);
    return t;
  }
  ThreadTimes t = t_;
  uint64_t end = last_ts_;
  if (state_ == State::Released) {
    // Events after the release that do not change state (a ForcedHandoff)
    // end the lifetime, so the released stretch runs up to them.
    account(t, State::Released, last_ts_, false);
  } else if (state_ == State::Holding || state_ == State::Waiting) {
    end = std::max(window_end, last_ts_);
    account(t, state_, end, false);
  }
  const uint64_t begin = arm.state != State::None ? arm.begin : first_ts_;
  t.in_window = state_ != State::None && window_.overlaps(begin, end);
  t.lifetime = window_.clip(begin, end);
  switch (arm.state) {
    case State::Holding:
      t.held += arm.d;
      if (arm.d) t.hold_hist.add(arm.d);
      break;
    case State::Waiting:
      t.wait += arm.d;
      if (arm.d) t.wait_hist.add(arm.d);
      break;
    case State::Released:
      t.released += arm.d;
      break;
    case State::None:
      break;
  }
  return t;
}

}  // namespace gilstat::report

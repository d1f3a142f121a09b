#include "report/thread_timeline.hpp"

#include <algorithm>

namespace gilstat::report {

using proto::EventKind;

uint64_t ThreadTimeline::elapsed(uint64_t ts) {
  if (ts >= since_) return ts - since_;
  ++t_.anomalies;
  return 0;
}

void ThreadTimeline::add(EventKind kind, uint64_t ts) {
  const bool changes_state = kind == EventKind::WaitBegin || kind == EventKind::Acquire ||
                             kind == EventKind::Release || kind == EventKind::WaitAbort;
  // The lifetime starts with the first event that puts the thread in a state;
  // a stray ForcedHandoff before it has no state to account its time to.
  if (state_ == State::None && changes_state) first_ts_ = last_ts_ = since_ = ts;
  if (state_ != State::None || changes_state) last_ts_ = std::max(last_ts_, ts);

  // The transitions of research §2.5.  Anything not listed below adds no
  // time, counts an anomaly and simply enters the state the event implies.
  State next = state_;
  bool expected = false;
  switch (kind) {
    case EventKind::WaitBegin:
      next = State::Waiting;
      if (state_ == State::Released) {
        t_.released += elapsed(ts);
        expected = true;
      } else if (state_ == State::Waiting) {
        // A second lock(mutex) without an acquisition: the first one was not
        // a wait for the GIL (a discarded lock/unlock pair), so that stretch
        // of time was spent released.
        t_.released += elapsed(ts);
        expected = true;
      } else if (state_ == State::None) {
        expected = true;  // the natural first event of a thread
      }
      break;
    case EventKind::Acquire:
      next = State::Holding;
      ++t_.acquisitions;
      if (state_ == State::Waiting) {
        const uint64_t d = elapsed(ts);
        t_.wait += d;
        t_.wait_hist.add(d);
        expected = true;
      }
      break;
    case EventKind::Release:
      next = State::Released;
      if (state_ == State::Holding) {
        const uint64_t d = elapsed(ts);
        t_.held += d;
        t_.hold_hist.add(d);
        expected = true;
      }
      break;
    case EventKind::WaitAbort:
      next = State::Released;
      if (state_ == State::Waiting) {
        t_.released += elapsed(ts);
        expected = true;
      }
      break;
    case EventKind::ForcedHandoff:
      ++t_.forced_handoffs;
      return;  // no state change, and no anomaly whatever the state
    case EventKind::DropRequest:
      return;  // counted per GIL
    default:
      ++t_.anomalies;  // unknown kind: corrupt input
      return;
  }
  if (!expected) ++t_.anomalies;
  state_ = next;
  since_ = ts;
}

ThreadTimes ThreadTimeline::finish(uint64_t window_end) const {
  ThreadTimes t = t_;
  uint64_t end = last_ts_;
  if (state_ == State::Released) {
    // Events after the release that do not change state (a ForcedHandoff)
    // end the lifetime, so the released stretch runs up to them.
    t.released += last_ts_ - since_;
  } else if (state_ == State::Holding || state_ == State::Waiting) {
    end = std::max(window_end, last_ts_);
    const uint64_t d = end - since_;  // since_ <= last_ts_ <= end
    if (state_ == State::Holding) {
      t.held += d;
      t.hold_hist.add(d);
    } else {
      t.wait += d;
      t.wait_hist.add(d);
    }
  }
  t.lifetime = end - first_ts_;
  return t;
}

}  // namespace gilstat::report

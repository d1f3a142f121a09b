#include "report/gil_stream.hpp"

namespace gilstat::report {

using proto::EventKind;

void GilStream::add(uint32_t tid, const proto::Event& ev) {
  // Serial-number arithmetic: the buffer never spans 2^31 seqs, so the
  // signed 32-bit distance from the next expected seq is unambiguous.
  const auto delta = static_cast<int32_t>(ev.seq - static_cast<uint32_t>(next_seq_));
  if (delta < 0) {
    ++t_.seq_stale;
    return;
  }
  const uint64_t seq = next_seq_ + static_cast<uint64_t>(delta);
  if (!pending_.emplace(seq, Pending{tid, ev.kind, ev.ts, ev.value}).second) {
    ++t_.seq_stale;
    return;
  }
  drain();
  while (pending_.size() > reorder_limit_) {
    skip_gap();
    drain();
  }
}

void GilStream::drain() {
  while (!pending_.empty() && pending_.begin()->first == next_seq_) {
    apply(pending_.begin()->second);
    pending_.erase(pending_.begin());
    ++next_seq_;
  }
}

void GilStream::skip_gap() {
  const uint64_t oldest = pending_.begin()->first;
  t_.seq_gaps += oldest - next_seq_;
  next_seq_ = oldest;
}

void GilStream::apply(const Pending& p) {
  switch (static_cast<EventKind>(p.kind)) {
    case EventKind::Acquire:
      ++t_.acquisitions;
      if (!t_.have_first_holder) {
        t_.have_first_holder = true;
        t_.first_holder = p.value;
      } else if (p.value != last_holder_) {
        ++t_.switches_after_first;
      }
      last_holder_ = p.value;
      if (holding_) ++t_.anomalies;  // the Release of that hold was lost
      if (released_ && release_tid_ != p.tid)
        t_.handoff_hist.add(p.ts >= release_ts_ ? p.ts - release_ts_ : 0);
      released_ = false;
      holding_ = true;
      holder_tid_ = p.tid;
      hold_since_ = p.ts;
      break;
    case EventKind::Release:
      if (holding_ && holder_tid_ == p.tid) {
        t_.hold_hist.add(p.ts >= hold_since_ ? p.ts - hold_since_ : 0);
      } else if (t_.acquisitions == 0 && !released_) {
        // The first event after an attach: the GIL was held when the probe
        // armed.  Expected, not an anomaly; its partial hold is not counted.
      } else {
        // A hold that began before arming, or whose Acquire was lost: its
        // length is unknown, so it is not guessed.
        ++t_.anomalies;
      }
      holding_ = false;
      released_ = true;
      release_tid_ = p.tid;
      release_ts_ = p.ts;
      break;
    case EventKind::DropRequest:
      ++t_.drop_requests;
      break;
    default:
      ++t_.anomalies;
      break;
  }
}

void GilStream::close(uint64_t window_end) {
  while (!pending_.empty()) {
    skip_gap();
    drain();
  }
  if (holding_) {
    const uint64_t end = window_end > hold_since_ ? window_end : hold_since_;
    t_.hold_hist.add(end - hold_since_);
    holding_ = false;
  }
}

GilTimes GilStream::finish(uint64_t window_end) const {
  GilStream copy = *this;
  copy.close(window_end);
  return copy.t_;
}

}  // namespace gilstat::report

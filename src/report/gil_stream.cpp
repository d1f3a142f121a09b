#include "report/gil_stream.hpp"

#include <algorithm>
#include <bit>

namespace gilstat::report {

using proto::EventKind;

namespace {
constexpr size_t kInitialRing = 64;
}

GilStream::GilStream(size_t reorder_limit, uint64_t first_seq, const TimeWindow& window)
    : reorder_limit_(reorder_limit),
      window_(window),
      next_seq_(first_seq),
      ring_(kInitialRing),
      max_ring_(std::bit_ceil(std::max<size_t>(kInitialRing, 2 * reorder_limit + 2))) {}

void GilStream::add(uint32_t tid, const proto::Event& ev) {
  // Serial-number arithmetic: the buffer never spans 2^31 seqs, so the
  // signed 32-bit distance from the next expected seq is unambiguous.
  const auto delta = static_cast<int32_t>(ev.seq - static_cast<uint32_t>(next_seq_));
  if (delta < 0) {
    ++t_.seq_stale;
    return;
  }
  if (delta == 0 && pending_ == 0) {  // in order: the common case, no buffering
    apply(tid, ev.kind, ev.ts, ev.value);
    ++next_seq_;
    return;
  }
  put(next_seq_ + static_cast<uint64_t>(delta), tid, ev);
  drain();
  while (pending_ > reorder_limit_ && skip_gap()) drain();
}

void GilStream::grow(uint64_t distance) {
  const uint64_t want = std::min<uint64_t>(distance + 1, 4 * (uint64_t{pending_} + 1));
  size_t size = ring_.size();
  while (size < want && size < max_ring_) size *= 2;
  if (size == ring_.size()) return;
  std::vector<Pending> bigger(size);
  for (const Pending& p : ring_)
    if (p.used) bigger[p.seq & (size - 1)] = p;
  ring_.swap(bigger);
  migrate();
}

void GilStream::put(uint64_t seq, uint32_t tid, const proto::Event& ev) {
  const uint64_t distance = seq - next_seq_;
  // The ring grows with what is actually buffered, so a seq far ahead (lost
  // events, a damaged file) costs one overflow entry, not a huge ring.
  if (distance >= ring_.size() && pending_ >= ring_.size() / 4) grow(distance);
  const Pending p{seq, ev.ts, ev.value, tid, ev.kind, true};
  if (distance < ring_.size()) {
    Pending& slot = ring_[seq & (ring_.size() - 1)];
    if (slot.used) {
      ++t_.seq_stale;  // a duplicate
      return;
    }
    slot = p;
  } else if (!overflow_.emplace(seq, p).second) {
    ++t_.seq_stale;
    return;
  }
  ++pending_;
}

void GilStream::migrate() {
  while (!overflow_.empty() && overflow_.begin()->first - next_seq_ < ring_.size()) {
    const Pending& p = overflow_.begin()->second;
    ring_[p.seq & (ring_.size() - 1)] = p;
    overflow_.erase(overflow_.begin());
  }
}

void GilStream::drain() {
  const size_t mask = ring_.size() - 1;
  for (;;) {
    Pending& slot = ring_[next_seq_ & mask];
    if (!slot.used) break;
    slot.used = false;
    --pending_;
    apply(slot.tid, slot.kind, slot.ts, slot.value);
    ++next_seq_;
    if (!overflow_.empty()) migrate();
  }
}

bool GilStream::skip_gap() {
  const size_t mask = ring_.size() - 1;
  for (size_t i = 0; i < ring_.size(); ++i) {
    if (ring_[(next_seq_ + i) & mask].used) {
      t_.seq_gaps += i;
      next_seq_ += i;
      return true;
    }
  }
  if (overflow_.empty()) return false;
  const uint64_t oldest = overflow_.begin()->first;
  t_.seq_gaps += oldest - next_seq_;
  next_seq_ = oldest;
  migrate();
  return true;
}

void GilStream::apply(uint32_t tid, uint8_t kind, uint64_t ts, uint64_t value) {
  switch (static_cast<EventKind>(kind)) {
    case EventKind::Acquire: {
      const bool in = window_.contains(ts);
      if (in) ++t_.acquisitions;
      if (!t_.have_first_holder) {
        t_.have_first_holder = true;
        t_.first_holder = value;
        t_.first_in_window = in;
      } else if (value != last_holder_ && in) {
        ++t_.switches_after_first;
      }
      last_holder_ = value;
      if (holding_) ++t_.anomalies;  // the Release of that hold was lost
      if (released_ && release_tid_ != tid && in)
        t_.handoff_hist.add(ts >= release_ts_ ? ts - release_ts_ : 0);
      released_ = false;
      holding_ = true;
      holder_tid_ = tid;
      hold_since_ = ts;
      drop_requested_ = false;
      break;
    }
    case EventKind::Release:
      if (holding_ && holder_tid_ == tid) {
        const uint64_t end = ts >= hold_since_ ? ts : hold_since_;
        if (window_.overlaps(hold_since_, end)) {
          t_.hold_hist.add(window_.clip(hold_since_, end));
          if (hold_since_ < window_.lo) ++t_.acquisitions;  // running when the window opened
        }
        if (drop_requested_ && window_.contains(ts)) {
          const uint64_t d = ts >= drop_request_ts_ ? ts - drop_request_ts_ : 0;
          t_.drop_latency_hist.add(d);
          t_.drop_latency_by_tid[tid].add(d);
        }
      } else if (t_.acquisitions == 0 && !released_ && !t_.have_first_holder) {
        // The first event after an attach: the GIL was held when the probe
        // armed.  Expected, not an anomaly; its partial hold is not counted.
      } else {
        // A hold that began before arming, or whose Acquire was lost: its
        // length is unknown, so it is not guessed.
        ++t_.anomalies;
      }
      holding_ = false;
      drop_requested_ = false;
      released_ = true;
      release_tid_ = tid;
      release_ts_ = ts;
      break;
    case EventKind::DropRequest:
      if (window_.contains(ts)) ++t_.drop_requests;
      if (holding_ && !drop_requested_) {
        drop_requested_ = true;
        drop_request_ts_ = ts;
      }
      break;
    default:
      ++t_.anomalies;
      break;
  }
}

void GilStream::close(uint64_t window_end) {
  while (pending_ > 0 && skip_gap()) drain();
  if (holding_) {
    const uint64_t end = window_end > hold_since_ ? window_end : hold_since_;
    t_.open_hold = true;
    t_.open_holder_tid = holder_tid_;
    t_.open_hold_since = hold_since_;
    if (window_.overlaps(hold_since_, end)) {
      t_.hold_hist.add(window_.clip(hold_since_, end));
      if (hold_since_ < window_.lo) ++t_.acquisitions;
    }
    // Still holding at the end despite a request: that counts too, it is
    // the very case the latency is for.
    if (drop_requested_) {
      const uint64_t d = end >= drop_request_ts_ ? end - drop_request_ts_ : 0;
      t_.drop_latency_hist.add(d);
      t_.drop_latency_by_tid[holder_tid_].add(d);
    }
    holding_ = false;
  }
}

GilTimes GilStream::finish(uint64_t window_end) const {
  GilStream copy = *this;
  copy.close(window_end);
  return copy.t_;
}

}  // namespace gilstat::report

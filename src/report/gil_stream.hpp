// One GIL's global history: the events issued under gil->mutex (Acquire,
// Release, DropRequest) carry a per-GIL seq that totally orders them, but
// they reach the CLI through per-thread rings, interleaved arbitrarily.  A
// bounded reorder buffer puts them back in seq order; hand-offs, switches and
// GIL-level holds are computed in that order.  Raw clock units.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>

#include "gilstat/protocol.hpp"
#include "report/histogram.hpp"

namespace gilstat::report {

struct GilTimes {
  uint64_t acquisitions = 0;
  uint64_t drop_requests = 0;
  uint64_t seq_gaps = 0;   // seq numbers skipped: lost, or later than the buffer allows
  uint64_t seq_stale = 0;  // arrived after their seq was passed, or duplicated
  uint64_t anomalies = 0;  // Acquire while held, Release of a hold never seen
  Histogram hold_hist;
  Histogram handoff_hist;  // Release by one thread -> Acquire by another

  // Acquisitions whose tstate differs from the previous acquisition's; the
  // first one is compared with the holder at arming time, which is only
  // known at the end, hence the split.
  bool have_first_holder = false;
  uint64_t first_holder = 0;
  uint64_t switches_after_first = 0;
  uint64_t switches(uint64_t initial_holder) const {
    return switches_after_first + (have_first_holder && first_holder != initial_holder);
  }
};

class GilStream {
 public:
  // first_seq is the seq of the GIL's first event: 1 when the probe armed
  // for this recording, later when a consumer joins a running probe.
  explicit GilStream(size_t reorder_limit, uint64_t first_seq = 1)
      : reorder_limit_(reorder_limit), next_seq_(first_seq) {}

  // An Acquire, Release or DropRequest with seq != 0, by thread tid.
  void add(uint32_t tid, const proto::Event& ev);
  void add_anomaly() { ++t_.anomalies; }

  // Totals after the events still buffered have been applied (gaps skipped)
  // and a hold still open has been closed at window_end.  Works on a copy:
  // the stream itself keeps waiting for late events.
  GilTimes finish(uint64_t window_end) const;

 private:
  struct Pending {
    uint32_t tid;
    uint8_t kind;
    uint64_t ts;
    uint64_t value;
  };

  void drain();     // applies the buffered events that are next in seq order
  void skip_gap();  // gives up on the missing seq before the oldest buffered one
  void apply(const Pending& p);
  void close(uint64_t window_end);

  size_t reorder_limit_;
  // Seq numbers are 32-bit in the ring and may wrap in a long recording;
  // they are widened to 64 bits relative to the next expected one.
  uint64_t next_seq_;
  std::map<uint64_t, Pending> pending_;

  bool holding_ = false;
  uint32_t holder_tid_ = 0;
  uint64_t hold_since_ = 0;
  bool released_ = false;  // a Release not yet followed by an Acquire
  uint32_t release_tid_ = 0;
  uint64_t release_ts_ = 0;
  uint64_t last_holder_ = 0;
  GilTimes t_;
};

}  // namespace gilstat::report

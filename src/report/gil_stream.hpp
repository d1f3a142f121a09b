// One GIL's global history: the events issued under gil->mutex (Acquire,
// Release, DropRequest) carry a per-GIL seq that totally orders them, but
// they reach the CLI through per-thread rings, interleaved arbitrarily.  A
// bounded reorder buffer puts them back in seq order; hand-offs, switches and
// GIL-level holds are computed in that order.  Raw clock units.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <vector>

#include "gilstat/protocol.hpp"
#include "report/histogram.hpp"
#include "report/thread_timeline.hpp"

namespace gilstat::report {

struct GilTimes {
  uint64_t acquisitions = 0;
  uint64_t drop_requests = 0;
  uint64_t seq_gaps = 0;   // seq numbers skipped: lost, or later than the buffer allows
  uint64_t seq_stale = 0;  // arrived after their seq was passed, or duplicated
  uint64_t anomalies = 0;  // Acquire while held, Release of a hold never seen
  Histogram hold_hist;
  Histogram handoff_hist;  // Release by one thread -> Acquire by another
  // First drop request during a hold -> that hold's Release: how long a
  // holder kept the GIL after another thread asked for it (CPython's
  // forced switch).  Per GIL and per holding thread.
  Histogram drop_latency_hist;
  std::map<uint32_t, Histogram> drop_latency_by_tid;
  // The hold still running at window_end (closed there by finish()): who,
  // and since when.  A live view shows it as the current holder.
  bool open_hold = false;
  uint32_t open_holder_tid = 0;
  uint64_t open_hold_since = 0;

  // Acquisitions whose tstate differs from the previous acquisition's; the
  // first one is compared with the holder at arming time, which is only
  // known at the end, hence the split.
  bool have_first_holder = false;
  bool first_in_window = true;
  uint64_t first_holder = 0;
  uint64_t switches_after_first = 0;
  uint64_t switches(uint64_t initial_holder) const {
    return switches_after_first +
           (have_first_holder && first_in_window && first_holder != initial_holder);
  }
};

class GilStream {
 public:
  // first_seq is the seq of the GIL's first event: 1 when the probe armed
  // for this recording, later when a consumer joins a running probe.
  explicit GilStream(size_t reorder_limit, uint64_t first_seq = 1, const TimeWindow& window = {});

  // An Acquire, Release or DropRequest with seq != 0, by thread tid.
  void add(uint32_t tid, const proto::Event& ev);
  void add_anomaly() { ++t_.anomalies; }
  // Calls fn(tid, histogram) for every thread's drop latencies and removes
  // those for which it returns true (threads folded away by the aggregator).
  template <typename Fn>
  void extract_drop_latency(Fn fn) {
    std::erase_if(t_.drop_latency_by_tid, [&](auto& e) { return fn(e.first, e.second); });
  }

  // Totals after the events still buffered have been applied (gaps skipped)
  // and a hold still open has been closed at window_end.  Works on a copy:
  // the stream itself keeps waiting for late events.
  GilTimes finish(uint64_t window_end) const;

 private:
  struct Pending {
    uint64_t seq;  // widened; meaningful when used
    uint64_t ts;
    uint64_t value;
    uint32_t tid;
    uint8_t kind;
    bool used;
  };

  void put(uint64_t seq, uint32_t tid, const proto::Event& ev);
  void drain();  // applies the buffered events that are next in seq order
  // Gives up on the missing seqs before the oldest buffered one; false when
  // nothing is buffered.
  bool skip_gap();
  void migrate();  // moves overflow entries that now fit into the ring
  void grow(uint64_t distance);
  void apply(uint32_t tid, uint8_t kind, uint64_t ts, uint64_t value);
  void close(uint64_t window_end);

  size_t reorder_limit_;
  TimeWindow window_;
  // Seq numbers are 32-bit in the ring and may wrap in a long recording;
  // they are widened to 64 bits relative to the next expected one.
  uint64_t next_seq_;
  // The reorder buffer: a ring indexed by seq for [next_seq_, next_seq_ +
  // size) (grown on demand up to max_ring_), and an ordered overflow for
  // seqs beyond it, which only lost events produce.  pending_ counts both.
  std::vector<Pending> ring_;
  size_t max_ring_;
  std::map<uint64_t, Pending> overflow_;
  size_t pending_ = 0;

  bool holding_ = false;
  uint32_t holder_tid_ = 0;
  uint64_t hold_since_ = 0;
  bool drop_requested_ = false;  // during the current hold
  uint64_t drop_request_ts_ = 0;
  bool released_ = false;  // a Release not yet followed by an Acquire
  uint32_t release_tid_ = 0;
  uint64_t release_ts_ = 0;
  uint64_t last_holder_ = 0;
  GilTimes t_;
};

}  // namespace gilstat::report

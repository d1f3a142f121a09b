// `gilstat export --format chrome`: the Chrome trace-event JSON format
// (https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU),
// read by the Perfetto UI and chrome://tracing.
//
//   {"traceEvents": [
//     {"ph": "M", "name": "process_name", "pid": P, "args": {"name": "python3 app.py"}},
//     {"ph": "M", "name": "thread_name", "pid": P, "tid": T, "args": {"name": "spin-0"}},
//     {"ph": "X", "name": "waiting", "cat": "gil", "pid": P, "tid": T, "ts": µs, "dur": µs,
//      "args": {"gil": 0}},
//     {"ph": "X", "name": "holding", ...},     (a long hold: "args": {"gil": 0, "stack":
//                                               [frame, ...]}, innermost first)
//     {"ph": "i", "name": "forced-switch request" | "forced hand-off", "s": "t", ...},
//     {"ph": "C", "name": "GIL 0 held %", "pid": P, "ts": µs, "args": {"held %": 97.5}},
//     {"ph": "C", "name": "GIL 0 waiting threads", ..., "args": {"waiting": 2.1}}],
//    "displayTimeUnit": "ns", "otherData": {...}}
//
// One track per thread; slices are the thread's waits and holds exactly as
// the report counts them (ThreadTimeline spans), so their durations add up
// to the report's per-thread wait/held totals.  ts is µs since the start of
// the recording's window, with ns precision.  Streamed: memory grows with
// threads and the fixed number of counter buckets, never with events.
#pragma once

#include <cstdint>
#include <map>
#include <ostream>
#include <string>
#include <unordered_map>
#include <vector>

#include "gilstat/protocol.hpp"
#include "report/thread_timeline.hpp"

namespace gilstat::report {

struct ChromeTraceInfo {
  int pid = 0;
  std::string command;
  std::string gilstat_version;
  double ns_per_tick = 1.0;
  uint64_t window_start = 0;              // raw: ts 0
  uint64_t window_end = 0;                // raw: open waits/holds end here
  std::map<uint32_t, std::string> names;  // final thread names
  // Per GIL index: the raw clock when the probe armed it (0: not recorded),
  // and the threads known from outside to hold or wait for it at that moment
  // (tid -> Holding or Waiting).  A thread's stretch from the arm to its first
  // event is drawn as the report counts it (ThreadTimeline::at_arm).
  std::map<uint8_t, uint64_t> arm_ts;
  std::map<uint8_t, std::map<uint32_t, ThreadTimeline::State>> declared_at_arm;
  // Counter resolution: the window is cut into at most this many buckets of
  // at least min_bucket_ns.
  size_t max_counter_buckets = 2000;
  uint64_t min_counter_bucket_ns = 1'000'000;
};

class ChromeTraceWriter {
 public:
  ChromeTraceWriter(std::ostream& out, const ChromeTraceInfo& info);
  // The stack taken during a long hold (the hold that began at hold_start,
  // raw), put on its slice; a later stack of the same hold replaces it.  A
  // recording has a hold's stacks before its Release.  At most kMaxStacks.
  void add_long_hold(uint32_t tid, uint8_t gil, uint64_t hold_start,
                     std::vector<std::string> stack);
  static constexpr size_t kMaxStacks = 1u << 16;
  // One thread's events in ring order (as the recording holds them).
  void add_events(uint32_t tid, uint32_t ring_flags, const proto::Event* events, size_t n);
  // Closes what is still open at window_end, writes the counters and the
  // end of the document.  `other` is extra "otherData" members, already JSON
  // ("\"truncated\": true"), may be empty.
  void finish(const std::string& other = {});

  uint64_t slices() const { return slices_; }

 private:
  struct Track {
    uint32_t tid;
    uint8_t gil;
    ThreadTimeline timeline;
  };
  struct Counters {
    std::vector<double> held_ticks;
    std::vector<double> wait_ticks;
  };
  Track& track(uint32_t tid, uint32_t flags, uint8_t gil);
  // The stretch from the arm to the track's first event (or to the window's
  // end for a declared thread without events).
  void arm_span(const Track& t);
  void span(const Track& t, const ThreadTimeline::Span& s);
  void instant(uint32_t tid, const char* name, uint64_t ts, uint8_t gil);
  void accumulate(std::vector<double>& buckets, uint64_t begin, uint64_t end);
  std::string us(uint64_t raw) const;  // raw ts -> µs since window start
  void begin_event();
  void maybe_flush();

  std::ostream& out_;
  ChromeTraceInfo info_;
  int pid_;
  std::string buf_;
  bool first_ = true;
  std::unordered_map<uint64_t, Track> tracks_;  // by tid << 8 | gil
  std::unordered_map<uint32_t, bool> named_;    // thread_name emitted
  std::map<uint8_t, Counters> counters_;
  uint64_t bucket_ticks_ = 1;
  size_t bucket_count_ = 1;
  uint64_t slices_ = 0;
  std::map<std::pair<uint64_t, uint64_t>, std::vector<std::string>> stacks_;  // (track, start)
};

}  // namespace gilstat::report

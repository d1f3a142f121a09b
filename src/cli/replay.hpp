// Reading a saved recording back for `report` and `export`: the one place
// that turns a file (complete, cut off or damaged) into a Report, and
// resolves --since/--until into raw clock units.
#pragma once

#include <optional>
#include <string>

#include "proto/recording.hpp"
#include "proto/recording_summary.hpp"
#include "report/aggregator.hpp"
#include "report/gil_profile.hpp"
#include "report/report.hpp"
#include "report/thread_timeline.hpp"

namespace gilstat::cli {

// A recording's events, thread names and drops into an aggregator, and its
// stack samples into a profile (also the reader fuzzer's path from bytes to
// a report).
class AggregatorFeed : public proto::RecordingVisitor {
 public:
  explicit AggregatorFeed(report::Aggregator& agg, report::TimeWindow window = {})
      : agg_(agg), window_(window) {}
  void on_events(uint32_t tid, uint32_t flags, std::span<const proto::Event> events) override {
    agg_.add_events(tid, flags, events.data(), events.size());
    hogs_.add_events(tid, events.data(), events.size());
  }
  void on_name(uint32_t tid, const std::string& name) override { agg_.set_thread_name(tid, name); }
  void on_drops(uint32_t tid, uint64_t n) override { agg_.add_thread_drops(tid, n); }
  void on_totals(const proto::RecTotals& t) override { agg_.add_thread_totals(t); }
  // A frame or stack out of order (a damaged file) is left out; samples
  // naming it then count as "(stack missing)".
  void on_frame(uint32_t id, const stacks::Frame& f) override { stacks_.define_frame(id, f); }
  void on_stack(uint32_t id, std::span<const uint32_t> ids) override {
    stacks_.define_stack(id, {ids.begin(), ids.end()});
  }
  void on_sample(const stacks::Sample& s) override {
    if (!window_.contains(s.ts)) return;
    profile_.add(s);
    if (window_.contains(s.hold_start)) hogs_.add_sample(s);
  }
  // The held-time profile of a report built from this feed's aggregator.
  report::GilProfile gil_profile(const report::Report& r) const {
    return profile_.finish(r, stacks_);
  }
  // Its long holds (window_end: raw clock).
  report::HogsReport hogs(const report::Report& r, uint64_t window_end) const {
    return hogs_.finish(r, stacks_, window_end);
  }

 private:
  report::Aggregator& agg_;
  report::TimeWindow window_;
  stacks::StackTable stacks_;
  report::ProfileCounter profile_;
  report::HogCounter hogs_;
};

struct WindowSpec {
  std::optional<double> since_s;  // seconds from the start of the recording's window
  std::optional<double> until_s;
  bool partial() const { return since_s || until_s; }
};

// The recording's window and clock as its metadata says (a first pass for
// --since/--until and export).
struct RecordingFrame {
  uint64_t start = 0;  // raw clock units
  uint64_t end = 0;
  double ns_per_tick = 1.0;
  bool calibrated = true;
};
RecordingFrame frame_of(const proto::RecordingSummary& summary);

// Throws gilstat::Error (usage) when the spec does not fit the recording.
report::TimeWindow resolve_window(const WindowSpec& spec, const RecordingFrame& frame);

// Reads `path` and aggregates it (over the window when given).  Damage and
// truncation are not errors: they are described in report.recording and
// printed on stderr as warnings.
report::Report report_from_file(const std::string& path, const WindowSpec& window = {});

// Fills report.recording from what the reader found.
void describe_read(const proto::ReadResult& read, const proto::RecordingSummary& summary,
                   bool calibrated, report::Report& report);

// The reader's problems as `gilstat: warning:` lines on stderr.
void warn_problems(const std::string& path, const proto::ReadResult& read);

}  // namespace gilstat::cli

// What a recording says about itself, complete or cut off: the latest
// metadata, the GIL table, thread names, clock calibration and the end of
// its window.  A visitor that forwards everything to another one, so one
// pass both replays events and collects this.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "proto/recording.hpp"

namespace gilstat::proto {

class RecordingSummary : public RecordingVisitor {
 public:
  // Every callback is also passed on to `next` (may be null).
  explicit RecordingSummary(RecordingVisitor* next = nullptr) : next_(next) {}

  // Events are always decoded: a cut-off file's window ends at its last
  // event, which only they tell.
  bool wants_events() const override { return true; }
  void on_header(const RecMeta& m) override;
  void on_meta(const RecMeta& m) override;
  void on_events(uint32_t tid, uint32_t flags, std::span<const Event> events) override;
  void on_name(uint32_t tid, const std::string& name) override;
  void on_drops(uint32_t tid, uint64_t n) override;
  void on_gil(const RecGil& g) override;
  void on_totals(const RecTotals& t) override {
    if (next_) next_->on_totals(t);
  }
  void on_clock(const RecClock& k) override;
  void on_module(const RecModule& m, uint64_t not_hooked) override {
    if (modules_.size() < report::kMaxModuleRows) modules_.push_back(m);
    modules_not_hooked_ = not_hooked;
    if (next_) next_->on_module(m, not_hooked);
  }
  void on_host_ids(int32_t host_pid, std::span<const TidPair> pairs) override;
  void on_frame(uint32_t id, const stacks::Frame& f) override {
    if (next_) next_->on_frame(id, f);
  }
  void on_stack(uint32_t id, std::span<const uint32_t> frame_ids) override {
    if (next_) next_->on_stack(id, frame_ids);
  }
  void on_sample(const stacks::Sample& s) override {
    if (next_) next_->on_sample(s);
  }
  void on_end(const RecEnd& e) override;

  const RecMeta& meta() const { return meta_; }
  bool have_meta() const { return have_meta_; }  // a Meta record (not just the header)
  std::vector<RecGil> gils() const;              // latest record of each GIL, by index
  const std::map<uint32_t, std::string>& names() const { return names_; }
  const std::optional<RecEnd>& end_record() const { return end_; }
  // A target in another PID namespace: its pid and tids as the recording's
  // host saw them (0 and empty otherwise).
  int32_t host_pid() const { return host_pid_; }
  const std::map<uint32_t, uint32_t>& host_tids() const { return host_tids_; }
  // The module table (Module records; empty before format 2's type 13).
  const std::vector<RecModule>& modules() const { return modules_; }
  uint64_t modules_not_hooked() const { return modules_not_hooked_; }
  uint64_t events() const { return events_; }
  uint64_t first_event_ts() const { return first_ts_; }
  uint64_t last_event_ts() const { return last_ts_; }

  // The End record, or for a cut-off file its best reconstruction: the
  // window ends at the last event or clock sample, ticks convert with the
  // first and last calibration pairs.  `calibrated` is false when a TSC
  // recording has fewer than two usable pairs, or a factor no clock has
  // (ns_per_tick is then 1).
  RecEnd effective_end(bool* calibrated = nullptr) const;

 private:
  RecordingVisitor* next_;
  RecMeta meta_;
  bool have_meta_ = false;
  std::map<uint32_t, RecGil> gils_;
  std::map<uint32_t, std::string> names_;
  int32_t host_pid_ = 0;
  std::map<uint32_t, uint32_t> host_tids_;
  std::optional<RecEnd> end_;
  std::optional<RecClock> first_clock_, last_clock_;
  std::vector<RecModule> modules_;
  uint64_t modules_not_hooked_ = 0;
  uint64_t events_ = 0;
  uint64_t first_ts_ = UINT64_MAX;
  uint64_t last_ts_ = 0;
};

}  // namespace gilstat::proto

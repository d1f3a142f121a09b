#include "proto/recording_summary.hpp"

#include <algorithm>

namespace gilstat::proto {

void RecordingSummary::on_header(const RecMeta& m) {
  if (!have_meta_) meta_ = m;
  if (next_) next_->on_header(m);
}

void RecordingSummary::on_meta(const RecMeta& m) {
  // Later records know more (the probe's facts arrive after the file is
  // created); what only the header had (host, start time) is kept.
  RecMeta merged = m;
  if (merged.host.empty()) merged.host = meta_.host;
  if (!merged.start_unix_ns) merged.start_unix_ns = meta_.start_unix_ns;
  if (!merged.start_mono_ns) merged.start_mono_ns = meta_.start_mono_ns;
  meta_ = std::move(merged);
  have_meta_ = true;
  if (next_) next_->on_meta(m);
}

void RecordingSummary::on_events(uint32_t tid, uint32_t flags, std::span<const Event> events) {
  for (const Event& ev : events) {
    first_ts_ = std::min(first_ts_, ev.ts);
    last_ts_ = std::max(last_ts_, ev.ts);
  }
  events_ += events.size();
  if (next_ && next_->wants_events()) next_->on_events(tid, flags, events);
}

void RecordingSummary::on_name(uint32_t tid, const std::string& name) {
  // As many as a report tracks (Aggregator::kDefaultMaxThreads).
  if (names_.size() < (size_t{1} << 16) || names_.contains(tid)) names_[tid] = name;
  if (next_) next_->on_name(tid, name);
}

void RecordingSummary::on_drops(uint32_t tid, uint64_t n) {
  if (next_) next_->on_drops(tid, n);
}

void RecordingSummary::on_gil(const RecGil& g) {
  gils_[g.index] = g;
  if (next_) next_->on_gil(g);
}

void RecordingSummary::on_clock(const RecClock& k) {
  if (!first_clock_) first_clock_ = k;
  last_clock_ = k;
  if (next_) next_->on_clock(k);
}

void RecordingSummary::on_host_ids(int32_t host_pid, std::span<const TidPair> pairs) {
  host_pid_ = host_pid;
  for (const auto& [tid, host] : pairs)
    if (host_tids_.size() < (size_t{1} << 16) || host_tids_.contains(tid)) host_tids_[tid] = host;
  if (next_) next_->on_host_ids(host_pid, pairs);
}

void RecordingSummary::on_end(const RecEnd& e) {
  end_ = e;
  if (next_) next_->on_end(e);
}

std::vector<RecGil> RecordingSummary::gils() const {
  std::vector<RecGil> out;
  for (const auto& [index, g] : gils_) out.push_back(g);
  return out;
}

namespace {
// A conversion factor from a file is untrusted: outside any clock gilstat
// uses (TSC of 100 MHz .. 1 THz, or ns) it is refused.
bool plausible(double ns_per_tick) { return ns_per_tick >= 1e-3 && ns_per_tick <= 10.0; }
}  // namespace

RecEnd RecordingSummary::effective_end(bool* calibrated) const {
  if (calibrated) *calibrated = true;
  if (end_) {
    RecEnd e = *end_;
    if (!plausible(e.ns_per_tick)) {
      e.ns_per_tick = 1.0;
      if (calibrated) *calibrated = false;
    }
    return e;
  }
  RecEnd e;
  e.window_end = std::max(meta_.window_start, events_ ? last_ts_ : 0);
  if (last_clock_) {
    e.window_end = std::max(e.window_end, last_clock_->raw);
    e.drops_no_ring = last_clock_->drops_no_ring;
  }
  e.ns_per_tick = 1.0;
  if (meta_.clock == ClockKind::Tsc) {
    const bool usable = first_clock_ && last_clock_ && last_clock_->raw > first_clock_->raw &&
                        last_clock_->mono_ns > first_clock_->mono_ns;
    const double slope = usable
                             ? static_cast<double>(last_clock_->mono_ns - first_clock_->mono_ns) /
                                   static_cast<double>(last_clock_->raw - first_clock_->raw)
                             : 0.0;
    if (plausible(slope)) {
      e.ns_per_tick = slope;
    } else if (calibrated) {
      *calibrated = false;
    }
  }
  return e;
}

}  // namespace gilstat::proto

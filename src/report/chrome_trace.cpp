#include "report/chrome_trace.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "report/render_json.hpp"

namespace gilstat::report {

namespace {
constexpr size_t kFlushBytes = 1 << 16;
using State = ThreadTimeline::State;
}  // namespace

ChromeTraceWriter::ChromeTraceWriter(std::ostream& out, const ChromeTraceInfo& info)
    : out_(out), info_(info), pid_(info.pid > 0 ? info.pid : 1) {
  if (!(info_.ns_per_tick > 0) || !std::isfinite(info_.ns_per_tick)) info_.ns_per_tick = 1.0;
  if (info_.window_end < info_.window_start) info_.window_end = info_.window_start;
  const uint64_t window = info_.window_end - info_.window_start;
  const auto min_ticks = static_cast<uint64_t>(
      std::ceil(static_cast<double>(info_.min_counter_bucket_ns) / info_.ns_per_tick));
  const size_t max_buckets = std::max<size_t>(1, info_.max_counter_buckets);
  bucket_ticks_ = std::max<uint64_t>({1, min_ticks, (window + max_buckets - 1) / max_buckets});
  bucket_count_ =
      static_cast<size_t>(std::max<uint64_t>(1, (window + bucket_ticks_ - 1) / bucket_ticks_));

  buf_ = "{\"traceEvents\": [";
  begin_event();
  fmt::format_to(
      std::back_inserter(buf_),
      R"({{"ph": "M", "name": "process_name", "pid": {}, "tid": 0, "args": {{"name": {}}}}})", pid_,
      json_string(info_.command.empty() ? "python" : info_.command));
}

void ChromeTraceWriter::begin_event() {
  buf_ += first_ ? "\n" : ",\n";
  first_ = false;
}

void ChromeTraceWriter::maybe_flush() {
  if (buf_.size() < kFlushBytes) return;
  out_.write(buf_.data(), static_cast<std::streamsize>(buf_.size()));
  buf_.clear();
}

std::string ChromeTraceWriter::us(uint64_t raw) const {
  // Signed: an event before the window start (it should not happen) still
  // gets a meaningful time rather than a wrapped one.
  const double ticks = raw >= info_.window_start ? static_cast<double>(raw - info_.window_start)
                                                 : -static_cast<double>(info_.window_start - raw);
  return fmt::format("{:.3f}", ticks * info_.ns_per_tick / 1000.0);
}

ChromeTraceWriter::Track& ChromeTraceWriter::track(uint32_t tid, uint32_t flags, uint8_t gil) {
  const uint64_t key = uint64_t{tid} << 8 | gil;
  auto it = tracks_.find(key);
  if (it != tracks_.end()) return it->second;
  if (!named_[tid]) {
    named_[tid] = true;
    std::string name;
    if (flags & proto::kRingOwnThread) {
      name = "gilstat";
    } else if (auto n = info_.names.find(tid); n != info_.names.end() && !n->second.empty()) {
      name = n->second;
    } else {
      name = fmt::format("native-{}", tid);
    }
    begin_event();
    fmt::format_to(std::back_inserter(buf_),
                   R"({{"ph": "M", "name": "thread_name", "pid": {}, "tid": {}, )"
                   R"("args": {{"name": {}}}}})",
                   pid_, tid, json_string(name));
  }
  return tracks_.emplace(key, Track{tid, gil, ThreadTimeline()}).first->second;
}

void ChromeTraceWriter::accumulate(std::vector<double>& buckets, uint64_t begin, uint64_t end) {
  begin = std::max(begin, info_.window_start);
  end = std::min(end, info_.window_end);
  if (end <= begin) return;
  if (buckets.empty()) buckets.assign(bucket_count_, 0.0);
  uint64_t at = begin;
  size_t i = static_cast<size_t>((begin - info_.window_start) / bucket_ticks_);
  while (at < end && i < buckets.size()) {
    const uint64_t bucket_end = info_.window_start + (i + 1) * bucket_ticks_;
    const uint64_t stop = std::min(end, bucket_end);
    buckets[i] += static_cast<double>(stop - at);
    at = stop;
    ++i;
  }
}

void ChromeTraceWriter::add_long_hold(uint32_t tid, uint8_t gil, uint64_t hold_start,
                                      std::vector<std::string> stack) {
  const auto key = std::make_pair(uint64_t{tid} << 8 | gil, hold_start);
  if (stacks_.size() >= kMaxStacks && !stacks_.count(key)) return;
  stacks_[key] = std::move(stack);
}

void ChromeTraceWriter::span(const Track& t, const ThreadTimeline::Span& s) {
  if (s.state != State::Waiting && s.state != State::Holding) return;
  const bool holding = s.state == State::Holding;
  begin_event();
  const double dur_us = static_cast<double>(s.end - s.begin) * info_.ns_per_tick / 1000.0;
  fmt::format_to(std::back_inserter(buf_),
                 R"({{"ph": "X", "name": "{}", "cat": "gil", "pid": {}, "tid": {}, "ts": {}, )"
                 R"("dur": {:.3f}, "args": {{"gil": {})",
                 holding ? "holding" : "waiting", pid_, t.tid, us(s.begin), dur_us, t.gil);
  if (holding) {
    auto it = stacks_.find({uint64_t{t.tid} << 8 | t.gil, s.begin});
    if (it != stacks_.end()) {
      fmt::format_to(std::back_inserter(buf_), R"(, "stack": [)");
      for (size_t i = 0; i < it->second.size(); ++i)
        fmt::format_to(std::back_inserter(buf_), "{}{}", i ? ", " : "", json_string(it->second[i]));
      fmt::format_to(std::back_inserter(buf_), "]");
      stacks_.erase(it);
    }
  }
  fmt::format_to(std::back_inserter(buf_), "}}}}");
  ++slices_;
  Counters& c = counters_[t.gil];
  accumulate(holding ? c.held_ticks : c.wait_ticks, s.begin, s.end);
  maybe_flush();
}

void ChromeTraceWriter::instant(uint32_t tid, const char* name, uint64_t ts, uint8_t gil) {
  begin_event();
  fmt::format_to(std::back_inserter(buf_),
                 R"({{"ph": "i", "s": "t", "name": "{}", "cat": "gil", "pid": {}, "tid": {}, )"
                 R"("ts": {}, "args": {{"gil": {}}}}})",
                 name, pid_, tid, us(ts), gil);
}

void ChromeTraceWriter::add_events(uint32_t tid, uint32_t flags, const proto::Event* events,
                                   size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const proto::Event& ev = events[i];
    const auto kind = static_cast<proto::EventKind>(ev.kind);
    if (kind == proto::EventKind::GilEnabled) {  // about the GIL: no track of its own
      instant(tid, ev.value ? "GIL enabled" : "GIL disabled", ev.ts, ev.gil);
      continue;
    }
    Track& t = track(tid, flags, ev.gil);
    const bool first = t.timeline.state() == State::None;
    span(t, t.timeline.add(kind, ev.ts));
    if (first && t.timeline.state() != State::None) arm_span(t);
    if (kind == proto::EventKind::DropRequest)
      instant(tid, "forced-switch request", ev.ts, ev.gil);
    else if (kind == proto::EventKind::ForcedHandoff)
      instant(tid, "forced hand-off", ev.ts, ev.gil);
  }
  maybe_flush();
}

void ChromeTraceWriter::arm_span(const Track& t) {
  const auto arm = info_.arm_ts.find(t.gil);
  if (arm == info_.arm_ts.end() || arm->second == 0) return;
  const ThreadTimeline::ArmStretch a = t.timeline.at_arm(arm->second, info_.window_end);
  span(t, {a.state, a.begin, a.end});
}

void ChromeTraceWriter::finish(const std::string& other) {
  // Threads declared at the arm that never changed state: held or waited
  // the whole time since.
  for (const auto& [gil, threads] : info_.declared_at_arm)
    for (const auto& [tid, state] : threads) {
      if (tracks_.count(uint64_t{tid} << 8 | gil)) continue;
      Track& t = track(tid, 0, gil);
      t.timeline.declare_at_arm(state);
      arm_span(t);
    }
  for (auto& [key, t] : tracks_) span(t, t.timeline.open_span(info_.window_end));
  const double bucket_ns = static_cast<double>(bucket_ticks_) * info_.ns_per_tick;
  for (const auto& [gil, c] : counters_) {
    for (size_t i = 0; i < bucket_count_; ++i) {
      const uint64_t at = info_.window_start + i * bucket_ticks_;
      const double held = c.held_ticks.empty() ? 0 : c.held_ticks[i];
      const double wait = c.wait_ticks.empty() ? 0 : c.wait_ticks[i];
      // The last bucket may be shorter than the others.
      const double width =
          std::min<double>(static_cast<double>(bucket_ticks_),
                           static_cast<double>(info_.window_end - std::min(at, info_.window_end)));
      const double scale = width > 0 ? 1.0 / width : 0.0;
      begin_event();
      fmt::format_to(std::back_inserter(buf_),
                     R"({{"ph": "C", "name": "GIL {} held %", "pid": {}, "tid": 0, "ts": {}, )"
                     R"("args": {{"held %": {:.2f}}}}})",
                     gil, pid_, us(at), 100.0 * held * scale);
      begin_event();
      fmt::format_to(std::back_inserter(buf_),
                     R"({{"ph": "C", "name": "GIL {} waiting threads", "pid": {}, "tid": 0, )"
                     R"("ts": {}, "args": {{"waiting": {:.3f}}}}})",
                     gil, pid_, us(at), wait * scale);
      maybe_flush();
    }
  }
  fmt::format_to(std::back_inserter(buf_),
                 "\n],\n\"displayTimeUnit\": \"ns\",\n\"otherData\": {{\"generator\": "
                 "{}, \"counter_bucket_ms\": {:.3f}{}{}}}}}\n",
                 json_string("gilstat " + info_.gilstat_version), bucket_ns / 1e6,
                 other.empty() ? "" : ", ", other);
  out_.write(buf_.data(), static_cast<std::streamsize>(buf_.size()));
  buf_.clear();
  out_.flush();
}

}  // namespace gilstat::report

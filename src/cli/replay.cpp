#include "cli/replay.hpp"

#include <fmt/core.h>

#include <cmath>
#include <iostream>

#include "cli/capture.hpp"
#include "common/error.hpp"
#include "report/aggregator.hpp"
#include "report/host_ids.hpp"
#include "report/modules.hpp"

namespace gilstat::cli {
RecordingFrame frame_of(const proto::RecordingSummary& summary) {
  RecordingFrame f;
  const proto::RecEnd end = summary.effective_end(&f.calibrated);
  f.ns_per_tick = end.ns_per_tick > 0 && std::isfinite(end.ns_per_tick) ? end.ns_per_tick : 1.0;
  f.end = end.window_end;
  f.start = summary.meta().window_start;
  // Cut off before the probe's metadata: the first event is the best start.
  if (f.start == 0 || f.start > f.end)
    f.start = summary.events() ? summary.first_event_ts() : f.end;
  if (f.start > f.end) f.start = f.end;
  return f;
}

report::TimeWindow resolve_window(const WindowSpec& spec, const RecordingFrame& frame) {
  const double length_s = static_cast<double>(frame.end - frame.start) * frame.ns_per_tick / 1e9;
  const double since = spec.since_s.value_or(0.0);
  const double until = spec.until_s.value_or(length_s);
  if (!(since >= 0) || !(until >= 0) || !std::isfinite(since))
    throw Error("--since and --until take seconds >= 0", {}, kExitUsage);
  if (since >= length_s)
    throw Error(fmt::format("--since {} s is past the end of the recording ({:.3f} s long)", since,
                            length_s),
                {}, kExitUsage);
  if (until <= since)
    throw Error(fmt::format("--until ({} s) must be later than --since ({} s)", until, since), {},
                kExitUsage);
  const auto ticks = [&](double s) {
    const double t = s * 1e9 / frame.ns_per_tick;
    const double room = static_cast<double>(frame.end - frame.start);
    return t >= room ? frame.end - frame.start : static_cast<uint64_t>(t);
  };
  return report::TimeWindow{frame.start + ticks(since), frame.start + ticks(until)};
}

void describe_read(const proto::ReadResult& read, const proto::RecordingSummary& summary,
                   bool calibrated, report::Report& r) {
  report::RecordingStatus& s = r.recording;
  s.from_file = true;
  s.format_version = read.format_version;
  s.host = summary.meta().host;
  s.start_unix_ns = summary.meta().start_unix_ns;
  s.truncated = read.truncated;
  s.calibrated = calibrated;
  s.corrupt_chunks = read.corrupt_chunks;
  s.skipped_bytes = read.skipped_bytes;
  s.problems = read.problems;
  // CPython's switch_number is written at the end; a cut-off file only has
  // an early sample of it.
  if (read.truncated)
    for (report::GilReport& g : r.gils) g.switch_number_known = false;
}

void warn_problems(const std::string& path, const proto::ReadResult& read) {
  for (const std::string& p : read.problems)
    std::cerr << fmt::format("gilstat: warning: {}: {}\n", path, p);
  if (read.problem_count > read.problems.size())
    std::cerr << fmt::format("gilstat: warning: {}: … and {} more problems\n", path,
                             read.problem_count - read.problems.size());
  if (read.truncated)
    std::cerr << fmt::format(
        "gilstat: warning: {} is truncated (no end record; its writer was probably killed): "
        "reporting the {} complete chunks it has\n",
        path, read.chunks);
}

report::Report report_from_file(const std::string& path, const WindowSpec& spec) {
  report::TimeWindow window;
  RecordingFrame frame;
  if (spec.partial()) {
    proto::RecordingSummary first;
    proto::read_recording(path, first);
    frame = frame_of(first);
    window = resolve_window(spec, frame);
  }
  report::Aggregator aggregator(window);
  AggregatorFeed replay(aggregator, window);
  proto::RecordingSummary summary(&replay);
  const proto::ReadResult read = proto::read_recording(path, summary);
  if (!spec.partial()) frame = frame_of(summary);

  proto::RecMeta meta = summary.meta();
  proto::RecEnd end = summary.effective_end();
  end.ns_per_tick = frame.ns_per_tick;
  meta.window_start = frame.start;
  end.window_end = frame.end;
  if (spec.partial()) {
    meta.window_start = window.lo;
    end.window_end = window.hi;
  }
  report::Report r = build_report(aggregator, meta, summary.gils(), end);
  report::apply_host_ids(r, summary.host_pid(), summary.host_tids());
  r.gil_profile = replay.gil_profile(r);
  report::attach_hogs(r, replay.hogs(r, end.window_end));
  // The table's counts cover the whole recording: not shown for a part of it.
  if (!spec.partial() && !summary.modules().empty())
    report::attach_modules(r, summary.modules(), summary.modules_not_hooked());
  describe_read(read, summary, frame.calibrated, r);
  if (spec.partial()) {
    r.window.partial = true;
    r.window.since_s = static_cast<double>(window.lo - frame.start) * frame.ns_per_tick / 1e9;
    r.window.until_s = static_cast<double>(window.hi - frame.start) * frame.ns_per_tick / 1e9;
  }
  warn_problems(path, read);
  return r;
}

}  // namespace gilstat::cli

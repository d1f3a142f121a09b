// Exports at the unit level: the Chrome trace's slices are the report's
// waits and holds (same state machine), the document is well formed even
// with no events, and the Prometheus histograms are cumulative and exact.
// The real binary's output is checked by a JSON parser and a line-by-line
// exposition checker in check_exports.py.
#include <gtest/gtest.h>

#include <map>
#include <regex>
#include <sstream>

#include "event_sim.hpp"
#include "report/aggregator.hpp"
#include "report/chrome_trace.hpp"
#include "report/prometheus.hpp"

namespace gilstat::report {
namespace {

TEST(ChromeTrace, SlicesAddUpToTheReportsTotals) {
  testing::EventScript s;
  const testing::SimTruth truth = testing::simulate_gil(s, 21, 4, 3000);
  Aggregator agg;
  s.deliver_interleaved(agg, 4);
  RecordingInfo info;
  info.window_start = 1000;
  info.window_end = truth.window_end;
  info.ns_per_tick = 0.5;
  const Report r = agg.finish(info, {});

  std::ostringstream out;
  ChromeTraceInfo ci;
  ci.pid = 77;
  ci.ns_per_tick = 0.5;
  ci.window_start = 1000;
  ci.window_end = truth.window_end;
  ci.min_counter_bucket_ns = 1;
  ChromeTraceWriter w(out, ci);
  for (const auto& [tid, events] : s.rings()) w.add_events(tid, 0, events.data(), events.size());
  w.finish();
  const std::string json = out.str();

  // One event per line: sum the complete events' durations per thread.
  std::map<std::pair<uint32_t, std::string>, double> total_us;
  std::map<std::pair<uint32_t, std::string>, size_t> slices;
  const std::regex x(R"re("ph": "X", "name": "(\w+)".*"tid": (\d+), .*"dur": ([0-9.]+))re");
  std::istringstream lines(json);
  size_t counters = 0;
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (std::regex_search(line, m, x)) {
      const auto key = std::make_pair(static_cast<uint32_t>(std::stoul(m[2])), m[1].str());
      total_us[key] += std::stod(m[3]);
      ++slices[key];
    }
    if (line.find("\"ph\": \"C\"") != std::string::npos) ++counters;
  }
  EXPECT_GT(counters, 0u);
  for (const ThreadReport& t : r.threads) {
    const auto held = std::make_pair(t.tid, std::string("holding"));
    const auto wait = std::make_pair(t.tid, std::string("waiting"));
    // Each slice is printed to the ns (±0.5 ns of rounding).
    EXPECT_NEAR(total_us[held] * 1000, t.held_ns, 0.5 * slices[held] + 1) << t.tid;
    EXPECT_NEAR(total_us[wait] * 1000, t.wait_total_ns, 0.5 * slices[wait] + 1) << t.tid;
    EXPECT_EQ(slices[held], t.hold_ns.count);
    EXPECT_EQ(slices[wait], t.wait_ns.count);
  }
}

TEST(ChromeTrace, NoEventsIsStillAWholeDocument) {
  std::ostringstream out;
  ChromeTraceInfo ci;
  ci.command = "python3 \"quoted\"\n";
  ChromeTraceWriter w(out, ci);
  w.finish("\"truncated\": true");
  const std::string json = out.str();
  EXPECT_EQ(json.rfind("{\"traceEvents\": [", 0), 0u);
  EXPECT_NE(json.find("\\\"quoted\\\"\\n"), std::string::npos) << json;
  EXPECT_NE(json.find("\"truncated\": true}}"), std::string::npos) << json;
  EXPECT_EQ(json.find("\"ph\": \"X\""), std::string::npos);
}

TEST(Prometheus, HistogramsAreCumulativeAndExact) {
  Report r;
  r.pid = 9;
  GilReport g;
  for (uint64_t ns : {500ull, 3'000ull, 3'000ull, 7'000'000ull, 20'000'000'000ull})
    g.hold_hist.add(ns);
  r.gils.push_back(g);
  std::ostringstream out;
  render_prometheus(r, out);
  const std::string text = out.str();
  const auto value_of = [&](const std::string& series) {
    const size_t at = text.find(series + " ");
    EXPECT_NE(at, std::string::npos) << series;
    return at == std::string::npos ? -1.0 : std::stod(text.substr(at + series.size() + 1));
  };
  const std::string h = "gilstat_gil_hold_duration_seconds";
  EXPECT_EQ(value_of(h + "_bucket{pid=\"9\",gil=\"0\",le=\"1e-06\"}"), 1);
  EXPECT_EQ(value_of(h + "_bucket{pid=\"9\",gil=\"0\",le=\"1e-05\"}"), 3);
  EXPECT_EQ(value_of(h + "_bucket{pid=\"9\",gil=\"0\",le=\"0.01\"}"), 4);
  EXPECT_EQ(value_of(h + "_bucket{pid=\"9\",gil=\"0\",le=\"10\"}"), 4);
  EXPECT_EQ(value_of(h + "_bucket{pid=\"9\",gil=\"0\",le=\"+Inf\"}"), 5);
  EXPECT_EQ(value_of(h + "_count{pid=\"9\",gil=\"0\"}"), 5);
  EXPECT_DOUBLE_EQ(value_of(h + "_sum{pid=\"9\",gil=\"0\"}"), 20.0070065);
}

TEST(Prometheus, LabelValuesAreEscapedAndValidUtf8) {
  EXPECT_EQ(prometheus_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  EXPECT_EQ(prometheus_label_value("cut \xc3"), "cut \xef\xbf\xbd");
  EXPECT_EQ(prometheus_label_value("caf\xc3\xa9"), "caf\xc3\xa9");
}

}  // namespace
}  // namespace gilstat::report

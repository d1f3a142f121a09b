// The exporter's pure parts: HTTP request parsing (hostile input), the
// sticky choice of thread groups with its "other" series, the command label,
// and OpenMetrics' counters.
#include <gtest/gtest.h>

#include <sstream>
#include <string>

#include "exporter/groups.hpp"
#include "exporter/http.hpp"
#include "report/groups.hpp"
#include "report/prometheus.hpp"

namespace gilstat::exporter {
namespace {

TEST(HttpParse, AGetWithHeaders) {
  HttpRequest r;
  ASSERT_EQ(parse_request("GET /metrics?x=1 HTTP/1.1\r\nHost: h\r\nAccept: text/plain;q=0.5,"
                          "application/openmetrics-text;version=1.0.0\r\n\r\n",
                          &r),
            ParseStatus::kComplete);
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.path, "/metrics");
  EXPECT_TRUE(wants_openmetrics(r.accept));
  ASSERT_EQ(parse_request("HEAD / HTTP/1.0\r\n\r\n", &r), ParseStatus::kComplete);
  EXPECT_EQ(r.path, "/");
  EXPECT_FALSE(wants_openmetrics(r.accept));
}

TEST(HttpParse, IncompleteUntilTheBlankLine) {
  HttpRequest r;
  EXPECT_EQ(parse_request("", &r), ParseStatus::kIncomplete);
  EXPECT_EQ(parse_request("GET /metrics HTTP/1.1\r\nHost: h\r\n", &r), ParseStatus::kIncomplete);
}

TEST(HttpParse, MalformedRequestsAreRefused) {
  HttpRequest r;
  for (const char* bad : {
           "GET\r\n\r\n",                                // no target
           "GET /metrics\r\n\r\n",                       // no version
           "GET /metrics HTTP/2.0\r\n\r\n",              // not 1.x
           "GET metrics HTTP/1.1\r\n\r\n",               // not a path
           "GET /a b HTTP/1.1\r\n\r\n",                  // a space too many
           " GET /metrics HTTP/1.1\r\n\r\n",             // empty method
           "G(T /metrics HTTP/1.1\r\n\r\n",              // not a token
           "GET /met\x01rics HTTP/1.1\r\n\r\n",          // control character
           "GET /metrics HTTP/1.1\r\nNo colon\r\n\r\n",  // header without ':'
           "GET /metrics HTTP/1.1\r\n: empty\r\n\r\n",   // empty header name
           "GET /metrics HTTP/1.1\r\nA: b\x01\r\n\r\n",  // control in a value
           "GET /metrics HTTP/1.1\r\n folded\r\n\r\n",   // obsolete folding
       })
    EXPECT_EQ(parse_request(bad, &r), ParseStatus::kBad) << bad;
  // A NUL inside the request line.
  EXPECT_EQ(parse_request(std::string("GET /\0x HTTP/1.1\r\n\r\n", 20), &r), ParseStatus::kBad);
}

TEST(HttpParse, HugeRequestsAreTooLarge) {
  HttpRequest r;
  const std::string endless = "GET /metrics HTTP/1.1\r\nX: " + std::string(kMaxRequestBytes, 'a');
  EXPECT_EQ(parse_request(endless, &r), ParseStatus::kTooLarge);
  EXPECT_EQ(parse_request(endless + "\r\n\r\n", &r), ParseStatus::kTooLarge);
  const std::string fits = "GET / HTTP/1.1\r\nX: " + std::string(kMaxRequestBytes - 100, 'a');
  EXPECT_EQ(parse_request(fits + "\r\n\r\n", &r), ParseStatus::kComplete);
}

TEST(HttpParse, OpenMetricsOnlyWhenAcceptable) {
  EXPECT_TRUE(wants_openmetrics("application/openmetrics-text"));
  EXPECT_TRUE(wants_openmetrics("text/plain, APPLICATION/OpenMetrics-Text; q=0.9"));
  EXPECT_FALSE(wants_openmetrics("application/openmetrics-text;q=0"));
  EXPECT_FALSE(wants_openmetrics("application/openmetrics-text; q=0.0"));
  EXPECT_FALSE(wants_openmetrics("text/plain"));
  EXPECT_FALSE(wants_openmetrics(""));
}

TEST(HttpSerialize, LengthAndHead) {
  const HttpResponse r{200, "text/plain", "hello\n"};
  const std::string full = serialize(r, false);
  EXPECT_NE(full.find("Content-Length: 6\r\n"), std::string::npos);
  EXPECT_NE(full.find("Connection: close\r\n"), std::string::npos);
  EXPECT_TRUE(full.ends_with("\r\n\r\nhello\n"));
  EXPECT_TRUE(serialize(r, true).ends_with("\r\n\r\n"));
}

report::GroupReport group(const char* key, double held, uint64_t acquisitions, uint32_t gil = 0) {
  report::GroupReport g;
  g.key = key;
  g.gil = gil;
  g.held_ns = held;
  g.acquisitions = acquisitions;
  return g;
}

const GroupRow* find(const std::vector<GroupRow>& rows, const std::string& key, uint32_t gil = 0) {
  for (const GroupRow& r : rows)
    if (r.group == key && r.gil == gil) return &r;
  return nullptr;
}

TEST(GroupSelection, BusiestNewGroupsTakeTheSlotsAndKeepThem) {
  GroupSelection s(2);
  auto rows = s.rows({group("a", 10, 1), group("b", 30, 1), group("c", 20, 1)}, 100);
  ASSERT_EQ(rows.size(), 3u);  // b, c and other
  ASSERT_TRUE(find(rows, "b") && find(rows, "c"));
  EXPECT_EQ(find(rows, "a"), nullptr);
  EXPECT_EQ(find(rows, kOtherGroup)->sums.held_ns, 10);
  EXPECT_EQ(find(rows, "b")->created, 100);
  // "a" overtakes both: it stays in other (membership is for good), and a new
  // group finds no slot.
  rows =
      s.rows({group("a", 500, 5), group("b", 31, 2), group("c", 21, 2), group("d", 900, 1)}, 200);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(find(rows, "b")->sums.held_ns, 31);
  EXPECT_EQ(find(rows, "c")->sums.held_ns, 21);
  EXPECT_EQ(find(rows, kOtherGroup)->sums.held_ns, 1400);
  EXPECT_EQ(find(rows, kOtherGroup)->sums.acquisitions, 6u);
  EXPECT_EQ(find(rows, kOtherGroup)->created, 100);
  EXPECT_EQ(s.exported(), 2u);
}

TEST(GroupSelection, ExportedPlusOtherIsEveryGroupOnEachGil) {
  GroupSelection s(3);
  std::vector<report::GroupReport> groups;
  double total0 = 0, total1 = 0;
  for (int i = 0; i < 50; ++i) {
    groups.push_back(group(
        ("kind" + std::string(1, static_cast<char>('a' + i % 26)) + std::to_string(i / 26 ? 1 : 0))
            .c_str(),
        i, 1, i % 2));
    (i % 2 ? total1 : total0) += i;
  }
  const auto rows = s.rows(groups, 1);
  double sum0 = 0, sum1 = 0;
  size_t per_gil[2] = {0, 0};
  for (const GroupRow& r : rows) {
    (r.gil ? sum1 : sum0) += r.sums.held_ns;
    ++per_gil[r.gil];
  }
  EXPECT_EQ(sum0, total0);
  EXPECT_EQ(sum1, total1);
  EXPECT_EQ(per_gil[0] + per_gil[1], 3u + 2u);  // 3 groups in all, one other per GIL
  EXPECT_EQ(rows.back().group, kOtherGroup);
}

TEST(GroupSelection, AThreadKindNamedOtherGoesToOther) {
  GroupSelection s(5);
  const auto rows = s.rows({group("other", 7, 1), group("x", 1, 1)}, 1);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(find(rows, kOtherGroup)->sums.held_ns, 7);
}

TEST(GroupSelection, NoSlotsMeansOnlyOther) {
  GroupSelection s(0);
  const auto rows = s.rows({group("x", 1, 1), group("y", 2, 1)}, 1);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].sums.held_ns, 3);
}

TEST(CommandLabel, ProgramNameAndSixtyCharactersOfArguments) {
  EXPECT_EQ(report::command_label("/usr/bin/python3.11 -m svc --port 80"),
            "python3.11 -m svc --port 80");
  EXPECT_EQ(report::command_label("python3"), "python3");
  const std::string args(100, 'x');
  EXPECT_EQ(report::command_label("/p/python " + args), "python " + std::string(60, 'x') + "…");
  // Cut on a character, not inside one.
  std::string accents;
  for (int i = 0; i < 70; ++i) accents += "\xc3\xa9";
  const std::string label = report::command_label("py " + accents);
  EXPECT_EQ(label.size(), 3 + 120 + 3u);
  EXPECT_EQ(report::prometheus_label_value(label), label);
}

TEST(Exposition, OpenMetricsCountersHaveCreatedAndEof) {
  std::ostringstream out;
  report::Exposition e(out, report::ExpositionFormat::kOpenMetrics);
  e.family("x_total", "counter", "X.", [&] { e.counter({{"pid", "1"}}, 5, 1700000000.5); });
  e.end();
  EXPECT_EQ(out.str(),
            "# HELP x X.\n# TYPE x counter\nx_total{pid=\"1\"} 5\n"
            "x_created{pid=\"1\"} 1700000000.5\n# EOF\n");
  std::ostringstream text;
  report::Exposition t(text, report::ExpositionFormat::kPrometheus);
  t.family("x_total", "counter", "X.", [&] { t.counter({{"pid", "1"}}, 5, 1700000000.5); });
  t.end();
  EXPECT_EQ(text.str(), "# HELP x_total X.\n# TYPE x_total counter\nx_total{pid=\"1\"} 5\n");
}

TEST(Exposition, AFloorKeepsLiveCountersFromGoingBack) {
  std::unordered_map<std::string, double> floor;
  const auto write = [&](double v, double g) {
    std::ostringstream out;
    report::Exposition e(out, report::ExpositionFormat::kPrometheus);
    e.set_floor(&floor);
    e.family("c_total", "counter", "C.", [&] { e.counter({{"pid", "1"}}, v, 0); });
    e.family("g", "gauge", "G.", [&] { e.sample({{"pid", "1"}}, g); });
    return out.str();
  };
  EXPECT_NE(write(10, 5).find("c_total{pid=\"1\"} 10\n"), std::string::npos);
  const std::string second = write(9.999999, 4);
  EXPECT_NE(second.find("c_total{pid=\"1\"} 10\n"), std::string::npos);
  EXPECT_NE(second.find("g{pid=\"1\"} 4\n"), std::string::npos);  // gauges go down
}

}  // namespace
}  // namespace gilstat::exporter

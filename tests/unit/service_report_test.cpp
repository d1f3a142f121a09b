// A service's report: thousands of short threads of a few kinds.  The text
// stays short (folded groups, at most kDefaultMaxLines lines), its rows add
// up exactly to their members and to the GIL's figures, and the findings say
// what the table shows.
#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

#include "report/findings.hpp"
#include "report/groups.hpp"
#include "report/render_json.hpp"
#include "report/render_text.hpp"

namespace gilstat::report {
namespace {

constexpr double kWindowNs = 4e9;

DurationStats stats_of(const Histogram& h) {
  return {h.percentile(0.5),
          h.percentile(0.9),
          h.percentile(0.99),
          h.max(),
          static_cast<uint64_t>(h.total()),
          h.count()};
}

ThreadReport thread(uint32_t tid, std::string name, double life_ns, double held_ns, double wait_ns,
                    uint32_t gil = 0) {
  ThreadReport t;
  t.tid = tid;
  t.name = std::move(name);
  t.gil = gil;
  t.lifetime_ns = life_ns;
  t.held_ns = held_ns;
  t.wait_total_ns = wait_ns;
  t.released_ns = life_ns - held_ns - wait_ns;
  t.acquisitions = 3 + tid % 7;
  for (uint64_t i = 0; i < t.acquisitions; ++i) {
    t.hold_hist.add(static_cast<uint64_t>(held_ns / static_cast<double>(t.acquisitions)));
    t.wait_hist.add(static_cast<uint64_t>(wait_ns / static_cast<double>(t.acquisitions)));
  }
  t.hold_ns = stats_of(t.hold_hist);
  t.wait_ns = stats_of(t.wait_hist);
  return t;
}

// The GILs' figures from the threads, as the aggregator makes them.
void finish(Report& r, size_t gils = 1) {
  r.duration_s = kWindowNs / 1e9;
  r.python_version = "3.12.1";
  r.gils.clear();
  for (uint32_t id = 0; id < gils; ++id) {
    GilReport g;
    g.id = id;
    double held = 0, wait = 0;
    for (const ThreadReport& t : r.threads) {
      if (t.gil != id) continue;
      held += t.held_ns;
      if (!t.own) wait += t.wait_total_ns;
      g.acquisitions += t.acquisitions;
      g.hold_hist.merge(t.hold_hist);
      g.wait_hist.merge(t.wait_hist);
    }
    // Waits and holds from 10 ns to 10 s: the tallest histograms there are.
    for (uint64_t v = 10; v <= 10'000'000'000; v *= 2) {
      g.hold_hist.add(v);
      g.wait_hist.add(v);
    }
    g.utilization = held / kWindowNs;
    g.mean_waiting_threads = wait / kWindowNs;
    g.switches = g.acquisitions / 2;
    g.switch_number_delta = static_cast<int64_t>(g.switches);
    r.gils.push_back(g);
  }
  std::stable_sort(r.threads.begin(), r.threads.end(),
                   [](const auto& a, const auto& b) { return a.held_ns > b.held_ns; });
  r.groups = group_threads(r.threads);
}

// 5,000 short threads in three kinds (a thread per request, a pool, native
// callers) and a few long ones.
Report service() {
  Report r;
  uint32_t tid = 1000;
  for (int i = 0; i < 3000; ++i)  // a few ms each, some holding, some waiting
    r.threads.push_back(thread(tid++,
                               "Thread-" + std::to_string(i + 2) + " (process_request_thread)", 3e6,
                               i % 2 ? 0.4e6 : 0.2e6, i % 2 ? 0.1e6 : 2.6e6));
  for (int i = 0; i < 1500; ++i)
    r.threads.push_back(
        thread(tid++, "ThreadPoolExecutor-0_" + std::to_string(i), 2e6, 0.1e6, 0.3e6));
  for (int i = 0; i < 500; ++i, ++tid)
    r.threads.push_back(thread(tid, "native-" + std::to_string(tid), 1e6, 0.05e6, 0.8e6));
  r.threads.push_back(thread(10, "MainThread", 4e9, 0.2e9, 0.01e9));
  r.threads.push_back(thread(11, "Thread-1 (serve_forever)", 4e9, 0.05e9, 0.01e9));
  r.threads.push_back(thread(12, "watchdog", 4e9, 0.01e9, 0.001e9));
  ThreadReport own = thread(13, "gilstat", 1e9, 0.001e9, 0.01e9);
  own.own = true;
  r.threads.push_back(own);
  finish(r);
  return r;
}

std::string text_of(const Report& r, TextOptions opt) {
  std::ostringstream out;
  render_text(r, out, opt);
  return out.str();
}

TextOptions report_command() {  // what `gilstat report FILE` asks for
  TextOptions opt;
  opt.histograms = true;
  opt.findings = true;
  return opt;
}

size_t lines(const std::string& text) { return std::count(text.begin(), text.end(), '\n'); }

TEST(ServiceReport, FiveThousandThreadsFitInTheDefaultReport) {
  const Report r = service();
  const std::string text = text_of(r, report_command());
  EXPECT_LE(lines(text), kDefaultMaxLines) << text;
  EXPECT_NE(text.find("Thread-N (process_request_thread) ×3,000"), std::string::npos) << text;
  EXPECT_NE(text.find("ThreadPoolExecutor-N_N ×1,500"), std::string::npos) << text;
  EXPECT_NE(text.find("native-N ×500"), std::string::npos) << text;
  EXPECT_NE(text.find("Thread-1 (serve_forever)"), std::string::npos) << text;  // a single
  EXPECT_NE(text.find("per thread held: p50"), std::string::npos) << text;
  EXPECT_EQ(text.find("more threads"), std::string::npos) << text;  // 7 rows: all shown
  EXPECT_NE(text.find("GIL 0 hold"), std::string::npos) << text;    // room for the histograms

  // --max-threads all: every thread has a line.
  TextOptions all = report_command();
  all.max_threads = 0;
  all.max_lines = 0;
  const std::string full = text_of(r, all);
  EXPECT_GT(lines(full), r.threads.size());
  EXPECT_NE(full.find("  Thread-2 (process_request_thread)"), std::string::npos);
}

TEST(ServiceReport, GroupRowsAreExactlyTheirMembersAndAddUpToTheGil) {
  const Report r = service();
  const std::vector<TableRow> rows = table_rows(r.threads);
  ASSERT_EQ(rows.size(), 7u);  // 3 groups, 4 single threads
  size_t members = 0;
  double held = 0, wait = 0;
  for (const TableRow& row : rows) {
    members += row.members.size();
    double m_held = 0, m_wait = 0, m_life = 0;
    uint64_t m_acq = 0;
    for (const ThreadReport* t : row.members) {
      m_held += t->held_ns;
      m_wait += t->wait_total_ns;
      m_life += t->lifetime_ns;
      m_acq += t->acquisitions;
      EXPECT_EQ(group_key(*t), row.sums.key);
    }
    EXPECT_EQ(row.sums.held_ns, m_held) << row.sums.key;  // the same sums, exactly
    EXPECT_EQ(row.sums.wait_total_ns, m_wait) << row.sums.key;
    EXPECT_EQ(row.sums.lifetime_ns, m_life) << row.sums.key;
    EXPECT_EQ(row.sums.acquisitions, m_acq) << row.sums.key;
    EXPECT_EQ(row.sums.tids.size(), row.members.size());
    EXPECT_EQ(row.folded(), row.members.size() >= kMinGroupSize) << row.sums.key;
    held += row.sums.held_ns;
    if (!row.sums.own) wait += row.sums.wait_total_ns;
  }
  EXPECT_EQ(members, r.threads.size());
  // HELD% of the window adds up to the utilisation, WAIT% to the waiters.
  EXPECT_NEAR(held / kWindowNs, r.gils[0].utilization, 1e-12);
  EXPECT_NEAR(wait / kWindowNs, r.gils[0].mean_waiting_threads, 1e-12);

  // The JSON's groups are the same sums, and every thread names its group.
  std::ostringstream json;
  render_json(r, json);
  const std::string group =
      "\"key\": \"Thread-N (process_request_thread)\", \"gil\": 0, \"own\": false, "
      "\"folded\": true, \"size\": 3000";
  EXPECT_NE(json.str().find(group), std::string::npos);
  EXPECT_NE(json.str().find("\"name\": \"native-5500\", \"group\": \"native-N\""),
            std::string::npos);
}

TEST(ServiceReport, AnyRecordingStaysUnderTheLineLimit) {
  // 16 GILs with every warning, 2,000 threads of distinct kinds (no digits
  // to fold them), starved and hot threads on every GIL, lost events.
  Report r;
  r.command = std::string(300, 'x');
  r.window.partial = true;
  r.recording.truncated = true;
  r.recording.corrupt_chunks = 2;
  r.drops = 10;
  r.untracked_events = 5;
  for (uint32_t i = 0; i < 2000; ++i) {
    std::string name = "w-";
    for (uint32_t n = i; n; n /= 26) name += static_cast<char>('a' + n % 26);
    ThreadReport t = thread(i + 1, name, 1e9, i % 3 ? 1e6 : 0.1e9, i % 3 ? 0.9e9 : 1e6, i % 16);
    t.acquisitions = 50'000;
    t.drop_latency_ns = {1, 1, 1, 90'000'000, 90'000'000, 1};
    r.threads.push_back(t);
  }
  finish(r, 16);
  for (GilReport& g : r.gils) {
    g.seq_gaps = 3;
    g.switch_number_delta += 1;
    g.drop_latency_ns = {1, 2, 3, 4, 5, 6};
    g.disabled_ns = 1e6;
    g.enabled_changes = {{0, 0}, {1e6, 1}};
  }
  const std::string text = text_of(r, report_command());
  EXPECT_LE(lines(text), kDefaultMaxLines) << text;
  EXPECT_NE(text.find("more threads"), std::string::npos);
  EXPECT_NE(text.find("Other GILs, one line each"), std::string::npos) << text;
  EXPECT_NE(text.find("MISMATCH"), std::string::npos);
  EXPECT_NE(text.find("more findings (--json lists them all)"), std::string::npos) << text;
  // Asked for: as many rows as wanted, whatever the length.
  TextOptions many = report_command();
  many.max_threads = 500;
  many.max_lines = 0;
  EXPECT_GT(lines(text_of(r, many)), 500u);
}

TEST(ServiceReport, EvenADamagedRecordingWith256GilsStaysShort) {
  Report r;
  for (uint32_t i = 0; i < 512; ++i)
    r.threads.push_back(thread(i + 1, "t-" + std::to_string(i), 1e9, 1e6, 1e6, i % 256));
  finish(r, 256);
  const std::string text = text_of(r, report_command());
  EXPECT_LE(lines(text), kDefaultMaxLines) << text;
  EXPECT_NE(text.find("more GILs"), std::string::npos) << text;
}

std::vector<Finding> of_kind(const std::vector<Finding>& all, const std::string& id) {
  std::vector<Finding> out;
  for (const Finding& f : all)
    if (f.id == id) out.push_back(f);
  return out;
}

// Exactly one finding `id`, saying `says`.
void expect_one(const std::vector<Finding>& fs, const std::string& id, const std::string& says) {
  const auto found = of_kind(fs, id);
  ASSERT_EQ(found.size(), 1u) << id;
  EXPECT_NE(found[0].text.find(says), std::string::npos) << found[0].text;
}

TEST(ServiceFindings, AgreeWithTheTable) {
  // 400 request threads of a few ms: half held the GIL 90 % of their lives,
  // half waited 90 % of theirs; as a kind they hold it most.  300 native
  // callers waited 80 % of their lives.
  Report r;
  uint32_t tid = 100;
  for (int i = 0; i < 400; ++i)
    r.threads.push_back(thread(tid++, "Thread-" + std::to_string(i) + " (process_request_thread)",
                               4e6, i % 2 ? 3.6e6 : 0.2e6, i % 2 ? 0.2e6 : 3.6e6));
  for (int i = 0; i < 300; ++i, ++tid)
    r.threads.push_back(thread(tid, "native-" + std::to_string(tid), 2e6, 0.1e6, 1.6e6));
  r.threads.push_back(thread(1, "MainThread", 4e9, 0.1e9, 0));
  finish(r);
  const std::vector<Finding> fs = find_findings(r);
  const std::string text = text_of(r, report_command());

  // The request threads' row: HELD% 19.0 (400 x 1.9 ms of 4 s), WAIT%LIFE 47.5.
  EXPECT_NE(text.find("Thread-N (process_request_thread) ×400        -   19.0"), std::string::npos)
      << text;
  expect_one(fs, "main_holder",
             "Thread-N (process_request_thread) ×400 held GIL 0 19.0 % of the window");

  const auto starved = of_kind(fs, "starved_thread");
  ASSERT_EQ(starved.size(), 1u);
  EXPECT_EQ(starved[0].text.find("Thread-"), starved[0].text.find("Thread-N (process_request_"
                                                                  "thread) ×400 held it most"))
      << "only as the holder: " << starved[0].text;
  EXPECT_NE(starved[0].text.find("native-N ×300 (80.0 %)"), std::string::npos) << starved[0].text;
  EXPECT_NE(starved[0].text.find("while Thread-N (process_request_thread) ×400 held it most "
                                 "(19.0 % of the window)"),
            std::string::npos)
      << starved[0].text;
  EXPECT_NE(text.find("native-N ×300"), std::string::npos) << text;
  EXPECT_NE(text.find("80.0\n"), std::string::npos) << text;  // its WAIT%LIFE cell
  for (const Finding& f : fs) EXPECT_EQ(f.text.find("Thread-1"), std::string::npos) << f.text;
}

TEST(ServiceFindings, EqualWorkersTakingTurnsAreABusyGilNotStarvation) {
  // Four CPU-bound threads of one kind: each waits most of its life, and
  // the kind is what holds the GIL.  busy_gil says it; no starved finding.
  Report r;
  for (uint32_t i = 0; i < 4; ++i)
    r.threads.push_back(thread(10 + i, "spin-" + std::to_string(i), 4e9, 0.99e9, 2.9e9));
  finish(r);
  const std::vector<Finding> fs = find_findings(r);
  EXPECT_TRUE(of_kind(fs, "starved_thread").empty());
  EXPECT_EQ(of_kind(fs, "busy_gil").size(), 1u);
  // The same threads, folded (five of them), still are not "starved".
  r.threads.push_back(thread(20, "spin-4", 4e9, 0.0e9, 3.9e9));
  finish(r);
  EXPECT_TRUE(of_kind(find_findings(r), "starved_thread").empty());
}

TEST(ServiceFindings, HotAndSlowToDropKindsAreFoundAsGroups) {
  Report r;
  for (uint32_t i = 0; i < 200; ++i) {
    ThreadReport t =
        thread(100 + i, "ThreadPoolExecutor-0_" + std::to_string(i), 0.1e9, 0.01e9, 0.001e9);
    t.acquisitions = 2'000;  // 20,000 a second of each one's life
    if (i == 7) t.drop_latency_ns = {30'000'000, 0, 0, 60'000'000, 60'000'000, 2};
    r.threads.push_back(t);
  }
  r.threads.push_back(thread(1, "MainThread", 4e9, 1e9, 0));
  finish(r);
  const std::vector<Finding> fs = find_findings(r);
  // One finding for the kind, not 200.
  expect_one(fs, "hot_reacquire",
             "ThreadPoolExecutor-N_N ×200 acquired the GIL 20,000 times a second each (400,000 "
             "in all)");
  expect_one(fs, "ignores_drop_requests",
             "ThreadPoolExecutor-N_N ×200 kept the GIL up to 60.0 ms (2 requests)");
}

}  // namespace
}  // namespace gilstat::report

// `gilstat top`'s view without a terminal: reports and a screen size in,
// lines out.  The reports are built by hand so every expected figure is
// known exactly.
#include "cli/top_view.hpp"

#include <fmt/core.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "cli/top_stacks.hpp"
#include "report/fit_name.hpp"
#include "report/utf8.hpp"

namespace gilstat::cli {
namespace {

constexpr double kMs = 1e6;

report::ThreadReport thread(uint32_t tid, std::string name, double held_ms, double wait_ms = 0,
                            uint64_t acq = 0) {
  report::ThreadReport t;
  t.tid = tid;
  t.name = std::move(name);
  t.held_ns = held_ms * kMs;
  t.wait_total_ns = wait_ms * kMs;
  t.acquisitions = acq;
  t.lifetime_ns = 1000 * kMs;
  return t;
}

// A report over one second whose GIL totals are the sums of its threads.
report::Report report_of(std::vector<report::ThreadReport> threads) {
  report::Report r;
  r.pid = 4242;
  r.python_version = "3.12.1";
  r.duration_s = 1.0;
  report::GilReport g;
  for (const auto& t : threads) {
    g.hold_ns.total += static_cast<uint64_t>(t.held_ns);
    g.acquisitions += t.acquisitions;
  }
  g.switches = g.acquisitions;
  g.utilization = static_cast<double>(g.hold_ns.total) / 1e9;
  r.gils.push_back(g);
  r.threads = std::move(threads);
  return r;
}

struct Screen {
  report::Report prev, now;
  TopInterval interval() const { return {&prev, &now, 1.0, fates, {}}; }
  std::unordered_map<uint32_t, ThreadFate> fates;
  std::vector<std::string> render(const TopViewOptions& o) const {
    return render_top(interval(), o);
  }
};

// The first column (name) of each table row, between the column titles and
// the end of the rows.
std::vector<std::string> row_names(const std::vector<std::string>& lines) {
  std::vector<std::string> out;
  bool in_table = false;
  for (const auto& l : lines) {
    if (l.rfind("THREAD", 0) == 0) {
      in_table = true;
      continue;
    }
    if (!in_table || l.rfind("… ", 0) == 0 || l.rfind("sort:", 0) == 0) continue;
    // The name ends at the column gap before the TID column.
    out.push_back(l.substr(0, l.find("  ")));
  }
  return out;
}

const std::string* line_starting(const std::vector<std::string>& lines, const std::string& s) {
  for (const auto& l : lines)
    if (l.rfind(s, 0) == 0) return &l;
  return nullptr;
}

// The numeric cells of a row: split on spaces, after the name.
std::vector<std::string> cells(const std::string& line, size_t name_words) {
  std::vector<std::string> out;
  size_t i = 0, word = 0;
  while (i < line.size()) {
    while (i < line.size() && line[i] == ' ') ++i;
    const size_t j = line.find(' ', i);
    const std::string w = line.substr(i, j == std::string::npos ? std::string::npos : j - i);
    if (!w.empty() && word++ >= name_words) out.push_back(w);
    i = j == std::string::npos ? line.size() : j;
  }
  return out;
}

TEST(TopView, HeaderShowsUtilisationSwitchesWaitersAndHolder) {
  Screen s;
  s.now = report_of({thread(10, "spin-0", 300, 100, 40), thread(11, "spin-1", 218, 50, 30)});
  s.now.gils[0].holder_tid = 11;
  s.now.gils[0].holder_for_ns = 4.5 * kMs;
  const auto lines = s.render({.width = 120, .height = 30, .key_help = true});
  ASSERT_GE(lines.size(), 3u);
  EXPECT_NE(lines[0].find("pid 4242"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("drops 0"), std::string::npos) << lines[0];
  const std::string* gil = line_starting(lines, "GIL 0");
  ASSERT_NE(gil, nullptr);
  EXPECT_NE(gil->find("util  51.8 %"), std::string::npos) << *gil;
  EXPECT_NE(gil->find("switches/s     70"), std::string::npos) << *gil;
  EXPECT_NE(gil->find("waiters 0.15"), std::string::npos) << *gil;
  EXPECT_NE(gil->find("held by spin-1 for 4.50 ms"), std::string::npos) << *gil;
  EXPECT_NE(lines.back().find("q quit"), std::string::npos) << lines.back();
  EXPECT_EQ(row_names(lines), (std::vector<std::string>{"spin-0", "spin-1"}));
}

TEST(TopView, HolderFreeOrUnknown) {
  Screen s;
  s.now = report_of({thread(10, "spin-0", 300, 0, 4)});
  auto lines = s.render({});
  EXPECT_NE(line_starting(lines, "GIL 0")->find("free"), std::string::npos);
  s.now.gils[0].acquisitions = 0;
  lines = s.render({});
  EXPECT_NE(line_starting(lines, "GIL 0")->find("holder not seen yet"), std::string::npos);
}

// Distinct kinds of threads (no digits: each its own group).
std::vector<report::ThreadReport> many_kinds(size_t n) {
  std::vector<report::ThreadReport> out;
  for (size_t i = 0; i < n; ++i) {
    std::string name = "worker-";
    name += static_cast<char>('a' + i % 26);
    name += static_cast<char>('a' + i / 26);
    out.push_back(thread(static_cast<uint32_t>(100 + i), name, 1.0 + static_cast<double>(i)));
  }
  return out;
}

TEST(TopView, RowsCutToTheHeightWithMoreLine) {
  Screen s;
  s.now = report_of(many_kinds(50));
  for (size_t height : {30u, 20u, 12u}) {
    const auto lines = s.render({.width = 120, .height = height, .key_help = true});
    EXPECT_EQ(lines.size(), height);
    const auto names = row_names(lines);
    ASSERT_FALSE(names.empty());
    // The busiest first: held 50 ms, 49 ms, ...
    EXPECT_EQ(names[0], s.now.threads[49].name);
    const std::string* more = line_starting(lines, "… ");
    ASSERT_NE(more, nullptr) << height;
    EXPECT_EQ(*more, *(lines.end() - 2)) << "the … line is the last before the keys";
    EXPECT_NE(more->find("… " + std::to_string(50 - names.size()) + " more threads"),
              std::string::npos)
        << *more;
    // The hidden rows' share is said: Σ 1..k ms of a 1 s interval.
    const size_t k = 50 - names.size();
    EXPECT_NE(more->find(fmt::format("held {:.1f} %", k * (k + 1) / 2.0 / 10.0)), std::string::npos)
        << *more;
  }
}

TEST(TopView, MaxThreadsLimitsRowsAndAllShowsEveryOne) {
  Screen s;
  s.now = report_of(many_kinds(30));
  auto lines = s.render({.max_threads = 5});
  EXPECT_EQ(row_names(lines).size(), 5u);
  EXPECT_NE(line_starting(lines, "… 25 more threads"), nullptr);
  lines = s.render({});  // plain output, --max-threads all: every row, no height
  EXPECT_EQ(row_names(lines).size(), 30u);
  EXPECT_EQ(line_starting(lines, "… "), nullptr);
}

TEST(TopView, RowsSumToUtilisationAndWaiters) {
  Screen s;
  s.now = report_of(
      {thread(10, "a", 250, 125, 1), thread(11, "b", 125, 250, 1), thread(12, "c", 62.5, 0, 1)});
  const auto lines = s.render({.width = 120, .height = 30});
  double held = 0, wait = 0;
  for (const auto& name : {"a ", "b ", "c "}) {
    const auto c = cells(*line_starting(lines, name), 1);
    held += std::stod(c[1]);
    wait += std::stod(c[2]);
  }
  EXPECT_NEAR(held, 43.75, 0.1);  // util 43.8 %
  EXPECT_NE(line_starting(lines, "GIL 0")->find("util  43.8 %"), std::string::npos);
  EXPECT_NEAR(wait / 100, 0.375, 0.001);
  EXPECT_NE(line_starting(lines, "GIL 0")->find("waiters 0.38"), std::string::npos);
}

TEST(TopView, IntervalIsTheDifferenceOfTwoSnapshots) {
  Screen s;
  s.prev = report_of({thread(10, "a", 400, 100, 10)});
  s.now = report_of({thread(10, "a", 700, 150, 25)});
  const auto c = cells(*line_starting(s.render({}), "a "), 1);
  EXPECT_EQ(c[1], "30.0");  // HELD%: 300 ms of 1 s
  EXPECT_EQ(c[2], "5.0");   // WAIT%
  EXPECT_EQ(c[3], "15");    // ACQ/s
  EXPECT_NE(line_starting(s.render({}), "GIL 0")->find("util  30.0 %"), std::string::npos);
}

TEST(TopView, GroupsFoldedAndToggled) {
  std::vector<report::ThreadReport> threads;
  for (uint32_t i = 0; i < 12; ++i)
    threads.push_back(thread(200 + i, fmt::format("Thread-{} (handle)", 1900 + i), 10, 1, 2));
  for (uint32_t i = 0; i < 3; ++i)  // a group too small to fold
    threads.push_back(thread(300 + i, fmt::format("pool-{}", i), 5));
  threads.push_back(thread(7, "MainThread", 50));
  Screen s;
  s.now = report_of(threads);
  auto lines = s.render({.width = 120, .height = 40});
  EXPECT_EQ(row_names(lines), (std::vector<std::string>{"Thread-N (handle) ×12", "MainThread",
                                                        "pool-0", "pool-1", "pool-2"}));
  const auto c = cells(*line_starting(lines, "Thread-N (handle) ×12"), 3);
  EXPECT_EQ(c[0], "-");     // no single TID
  EXPECT_EQ(c[1], "12.0");  // 12 × 10 ms of 1 s
  EXPECT_EQ(c[2], "1.2");
  EXPECT_EQ(c[3], "24");
  lines = s.render({.groups = false, .width = 120, .height = 40});
  const auto names = row_names(lines);
  EXPECT_EQ(names.size(), 16u);
  EXPECT_EQ(names[0], "MainThread");
  EXPECT_EQ(std::count_if(names.begin(), names.end(),
                          [](const std::string& n) { return n.rfind("Thread-19", 0) == 0; }),
            12);
}

TEST(TopView, SortByEachKey) {
  Screen s;
  s.now = report_of({thread(1, "held", 300, 10, 5), thread(2, "wait", 100, 500, 1),
                     thread(3, "acq", 50, 20, 900)});
  auto order = [&](TopSort by) { return row_names(s.render({.sort = by})); };
  EXPECT_EQ(order(TopSort::Held), (std::vector<std::string>{"held", "wait", "acq"}));
  EXPECT_EQ(order(TopSort::Wait), (std::vector<std::string>{"wait", "acq", "held"}));
  EXPECT_EQ(order(TopSort::Acquisitions), (std::vector<std::string>{"acq", "held", "wait"}));
  TopSort parsed;
  EXPECT_TRUE(parse_top_sort("acq", parsed));
  EXPECT_EQ(parsed, TopSort::Acquisitions);
  EXPECT_FALSE(parse_top_sort("cpu", parsed));
}

TEST(TopView, ExitedThreadsInOneRowAndOlderOnesGone) {
  Screen s;
  s.prev = report_of({thread(9, "old", 20)});
  // Recalibrated TSC conversion: the same ticks, a hair more ns.
  s.now =
      report_of({thread(9, "old", 20.00001), thread(1, "live", 100), thread(2, "short-a", 30, 5, 3),
                 thread(3, "short-b", 20, 5, 2), thread(4, "short-c", 10, 0, 1)});
  s.fates = {{2, ThreadFate::ExitedInInterval},
             {3, ThreadFate::ExitedInInterval},
             {4, ThreadFate::ExitedInInterval},
             {9, ThreadFate::ExitedBefore}};
  // Even when the height cuts the rows, the exited row stays.
  for (size_t height : {40u, 7u}) {
    const auto lines = s.render({.width = 120, .height = height});
    const auto names = row_names(lines);
    EXPECT_EQ(names, (std::vector<std::string>{"live", "exited ×3"})) << height;
    const auto c = cells(*line_starting(lines, "exited ×3"), 2);
    EXPECT_EQ(c[1], "6.0");  // 60 ms of 1 s (the util is 6.0 % too: "old" did nothing)
    EXPECT_EQ(c[2], "1.0");
    EXPECT_EQ(c[3], "6");
  }
}

TEST(TopView, EveryLineFitsTheWidthAndNamesKeepTheirKind) {
  std::vector<report::ThreadReport> threads;
  for (uint32_t i = 0; i < 4; ++i)
    threads.push_back(
        thread(100 + i, fmt::format("Thread-{} (process_request_thread)", 1904 + i), 10 + i));
  threads.push_back(thread(7, std::string("evil\033[2Jname"), 1));
  Screen s;
  s.now = report_of(threads);
  s.now.gils[0].holder_tid = 103;
  s.now.gils[0].holder_for_ns = 1 * kMs;
  for (size_t width : {120u, 80u, 60u}) {
    const auto lines = s.render({.width = width, .height = 30, .key_help = true});
    for (const auto& l : lines) {
      EXPECT_LE(report::text_columns(l), width) << l;
      EXPECT_EQ(l.find('\033'), std::string::npos) << "an escape reached the screen: " << l;
    }
    // Names cut keep what tells their group apart.
    size_t cut = 0;
    for (const auto& n : row_names(lines)) {
      if (n.find("T") != 0) continue;
      EXPECT_NE(n.find(" (process_request_thread)"), std::string::npos) << n;
      cut += n.find("…") != std::string::npos;
    }
    EXPECT_EQ(cut, width == 60 ? 4u : 0u) << "names are cut only when the width forces it";
  }
}

// Subinterpreters with their own GIL: a GIL column, each GIL's header, and
// one exited row per GIL so that each GIL's rows still add up.
TEST(TopView, TwoGils) {
  Screen s;
  auto a = thread(1, "main", 400, 0, 4);
  auto b = thread(2, "sub", 300, 0, 3);
  b.gil = 1;
  auto c = thread(3, "gone-a", 50, 0, 1);
  auto d = thread(4, "gone-b", 20, 0, 1);
  d.gil = 1;
  s.now = report_of({a, b, c, d});
  report::GilReport second;
  second.id = 1;
  // The interval's held time comes from the exact utilisation (1 s window).
  second.utilization = 0.32;
  s.now.gils[0].utilization = 0.45;
  s.now.gils.push_back(second);
  s.fates = {{3, ThreadFate::ExitedInInterval}, {4, ThreadFate::ExitedInInterval}};
  const auto lines = s.render({.width = 120, .height = 30});
  EXPECT_NE(line_starting(lines, "GIL 0  util  45.0 %"), nullptr);
  EXPECT_NE(line_starting(lines, "GIL 1  util  32.0 %"), nullptr);
  const std::string* titles = line_starting(lines, "THREAD");
  ASSERT_NE(titles, nullptr);
  EXPECT_NE(titles->find(" GIL "), std::string::npos) << *titles;
  EXPECT_EQ(row_names(lines), (std::vector<std::string>{"main", "sub", "exited ×1", "exited ×1"}));
  EXPECT_EQ(cells(*line_starting(lines, "sub "), 1)[1], "1");  // the GIL column
  // exited rows: GIL 0's 50 ms, then GIL 1's 20 ms
  std::vector<std::string> exited;
  for (const auto& l : lines)
    if (l.rfind("exited", 0) == 0) exited.push_back(cells(l, 2)[1] + "/" + cells(l, 2)[2]);
  EXPECT_EQ(exited, (std::vector<std::string>{"0/5.0", "1/2.0"}));
}

TEST(TopViewNames, NamesAreMadePrintable) {
  // A thread name cannot move the cursor or change the terminal's state.
  EXPECT_EQ(report::printable("a\033b"), "a?b");
}

// The long holder's innermost native frame skips the C library and the
// vDSO (the clock read inside a native spin) to the code that called them.
TEST(TopStacks, LongHoldLineNamesTheCallerOfTheCLibrary) {
  using stacks::Frame;
  using stacks::FrameKind;
  const std::vector<Frame> stack = {{FrameKind::Native, "__vdso_clock_gettime", "", 0, "[vdso]", 0},
                                    {FrameKind::Native, "__clock_gettime", "", 0, "libc.so.6", 0},
                                    {FrameKind::Native, "spin_until", "", 0, "_demo.so", 0},
                                    {FrameKind::Python, "hog_caller", "/x/hog.py", 30, "", 0},
                                    {FrameKind::Python, "run", "/x/threading.py", 9, "", 0}};
  ASSERT_TRUE(innermost_native(stack));
  EXPECT_EQ(innermost_native(stack)->function, "spin_until");
  EXPECT_EQ(innermost_python(stack)->function, "hog_caller");
  // Only C library frames: the innermost one is shown, not nothing.
  EXPECT_EQ(innermost_native({stack[1]})->function, "__clock_gettime");
  EXPECT_FALSE(innermost_native({stack[3]}));

  TopLongHold h{7, 0, "hog", 0.15e9, true, innermost_python(stack), innermost_native(stack)};
  TopLongHold pending{8, 0, "", 0.02e9, false, std::nullopt, std::nullopt};
  report::GilProfile profile;
  profile.functions.push_back({"spin", "/x/w.py", 12, 0.25e9, 0.5e9});
  const auto lines = top_stack_lines({pending, h}, profile, 0.5, 5);
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(lines[0],
            "LONG HOLD GIL 0: hog (7) for 0.150 s, in spin_until (_demo.so) \u2190 hog_caller "
            "(/x/hog.py:30)");
  EXPECT_EQ(lines[1], "LONG HOLD GIL 0: tid 8 for 0.020 s, (no stack taken yet)");
  EXPECT_EQ(lines[2], "");
  EXPECT_NE(lines[3].find("FUNCTION (held in the interval)"), std::string::npos);
  // SELF% and TOTAL% of the interval's wall time.
  EXPECT_NE(lines[4].find("  50.0  100.0  /x/w.py:12"), std::string::npos) << lines[4];
}

}  // namespace
}  // namespace gilstat::cli

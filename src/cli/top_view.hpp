// What `gilstat top` shows for one interval, as lines of text: a pure
// function of two cumulative reports, the threads' fates and the screen's
// size, so that it is tested without a terminal (tests/unit/top_view_test.cpp).
//
// Interval figures are differences of two cumulative reports (each closes
// open holds and waits at its own "now"), so they add up exactly.  HELD% and
// WAIT% are of the interval's wall time: the rows of one GIL sum to its
// utilisation and to its mean number of waiters.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "report/report.hpp"

namespace gilstat::cli {

enum class TopSort { Held, Wait, Acquisitions };

// Parses "held", "wait" or "acq"; false for anything else.
bool parse_top_sort(const std::string& text, TopSort& out);
const char* top_sort_name(TopSort sort);

// Whether a thread was alive at the end of the interval.  A thread that
// exited before the interval began (and did nothing in it) is not shown.
enum class ThreadFate { Alive, ExitedInInterval, ExitedBefore };

// One (thread, GIL) row of the latest report and what changed in the interval.
struct ThreadDelta {
  const report::ThreadReport* now = nullptr;
  double held_ns = 0, wait_ns = 0;
  uint64_t acquisitions = 0;
};

struct GilDelta {
  const report::GilReport* now = nullptr;
  double hold_ns = 0;
  uint64_t acquisitions = 0, switches = 0, requests = 0;
};

std::vector<ThreadDelta> thread_deltas(const report::Report& prev, const report::Report& now);
// Whether the interval shows the thread: not when it exited before the
// interval began and did nothing in it (a thread-per-request service would
// otherwise list every thread it ever ran, interval after interval).
bool shown_in_interval(const ThreadDelta& d, const std::unordered_map<uint32_t, ThreadFate>& fates);
ThreadFate fate_of(const ThreadDelta& d, const std::unordered_map<uint32_t, ThreadFate>& fates);
std::vector<GilDelta> gil_deltas(const report::Report& prev, const report::Report& now);

struct TopInterval {
  const report::Report* prev = nullptr;  // the previous snapshot (an empty Report at first)
  const report::Report* now = nullptr;
  double interval_s = 0;
  // By tid; a tid not listed is alive (e.g. when fates are unknown).
  std::unordered_map<uint32_t, ThreadFate> fates;
  // Long holds running now and the functions that held the GIL in the
  // interval (top_stack_lines, top_stacks.hpp), shown under the threads.
  std::vector<std::string> stack_lines;
};

struct TopViewOptions {
  TopSort sort = TopSort::Held;
  bool groups = true;      // fold groups of >= report::kMinGroupSize threads into one row
  size_t max_threads = 0;  // rows before "… N more threads"; 0: as many as fit
  size_t width = 0;        // 0: no limit (plain output)
  size_t height = 0;       // 0: no limit (plain output)
  bool key_help = false;   // the last line lists the keys (full screen)
};

// The screen: every line at most `width` columns, at most `height` lines.
std::vector<std::string> render_top(const TopInterval& interval, const TopViewOptions& options);

}  // namespace gilstat::cli

// The human summary of a Report: a header (what was measured, with the
// drops always visible), one block per GIL, then a table of threads (groups
// of threads folded, see groups.hpp) whose HELD% and WAIT% are of the
// window, so one GIL's rows add up to its utilisation and its mean number
// of waiters.  Plain text, no colour; strings from the target are
// sanitised so a thread name cannot inject terminal escape sequences.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>

#include "report/groups.hpp"
#include "report/report.hpp"

namespace gilstat::report {

// The default text report fits a screenful or two: at most kDefaultMaxRows
// table rows and kDefaultMaxLines lines in all (fewer rows, then fewer
// histograms, when the GIL blocks and findings need the room).
inline constexpr size_t kDefaultMaxRows = 20;
inline constexpr size_t kDefaultMaxLines = 150;

struct TextOptions {
  // Rows of the thread table (a folded group is one row), then a "… N more
  // threads" line.  0: every thread, each folded group followed by its members.
  size_t max_threads = kDefaultMaxRows;
  // Lines of the whole report (0: no limit).  Callers that take a
  // --max-threads from the user set this to 0.
  size_t max_lines = kDefaultMaxLines;
  // Columns of the terminal the report goes to: thread names are cut (see
  // fit_name.hpp) only to fit it.  0 (not a terminal): names are never cut.
  size_t width = 0;
  bool histograms = false;         // wait/hold distributions drawn as bars
  bool thread_histograms = false;  // ... per thread row instead of per GIL
  bool findings = false;           // the "What this means" lines (findings.hpp)
};

void render_text(const Report& report, std::ostream& out, const TextOptions& options = {});

// "950 ns", "12.3 µs", "4.51 ms", "2.00 s": three significant digits.
std::string format_duration(uint64_t ns);

// 1234567 -> "1,234,567": counts are read at a glance.
std::string format_count(uint64_t n);

// How the table names a row: the thread's name, or for a folded group its
// key and size ("Thread-N (process_request_thread) ×4,812").  Not sanitised.
std::string row_label(const TableRow& row);

// A duration in ns held as a double (sums, products with ns_per_tick) as a
// uint64, saturating: NaN and negatives give 0, too large gives UINT64_MAX.
inline uint64_t saturating_ns(double ns) {
  if (!(ns > 0)) return 0;
  return ns >= 18446744073709551615.0 ? UINT64_MAX : static_cast<uint64_t>(ns);
}

// Free-threaded builds: how many times GIL g went from disabled to enabled
// in the window (counting an enabled start), and when it last did (ns since
// the window's start).
struct EnabledSpells {
  int count = 0;
  double last_on_ns = 0;
};
EnabledSpells enabled_spells(const GilReport& g);

// A log-scale bar chart of a distribution of durations (ns): one row per
// 1-2-5 step from the smallest to the largest value.  Nothing when empty.
void render_histogram(const Histogram& h, std::string_view title, std::ostream& out);

}  // namespace gilstat::report

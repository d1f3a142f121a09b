// The human summary of a Report: a header (what was measured, with the
// drops always visible), one block per GIL, then a table of threads.  Plain
// text, no colour; strings from the target are sanitised so a thread name
// cannot inject terminal escape sequences.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>

#include "report/report.hpp"

namespace gilstat::report {

struct TextOptions {
  size_t max_threads = 0;          // 0: all rows; else the busiest N and a "N more" line
  bool histograms = false;         // wait/hold distributions drawn as bars
  bool thread_histograms = false;  // ... per thread row instead of per GIL
  bool findings = false;           // the "What this means" lines (findings.hpp)
};

void render_text(const Report& report, std::ostream& out, const TextOptions& options = {});

// "950 ns", "12.3 µs", "4.51 ms", "2.00 s": three significant digits.
std::string format_duration(uint64_t ns);

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

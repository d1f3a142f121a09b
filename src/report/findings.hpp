// "What this means": the short lines under a report that turn its numbers
// into a diagnosis a Python developer can act on.  Pure function of a
// Report; each finding has a stable id (for JSON readers and tests).
#pragma once

#include <string>
#include <vector>

#include "report/report.hpp"

namespace gilstat::report {

struct Finding {
  std::string id;        // e.g. "starved_thread"
  std::string severity;  // "warning" (act on it) or "info"
  std::string text;      // one or two sentences, plain text
};

// Thresholds, here so tests and docs can name them.
inline constexpr double kStarvedWaitShare = 0.5;  // of a thread's lifetime
inline constexpr double kHotAcquisitionsPerSecond = 10'000;
inline constexpr uint64_t kHotMinAcquisitions = 1'000;
// Four default switch intervals: a cooperative holder drops within µs, but on
// an oversubscribed machine it may wait a few ms for a CPU first.
inline constexpr uint64_t kIgnoredRequestNs = 20'000'000;
inline constexpr double kBusyUtilization = 0.9;
inline constexpr double kBusyWaiters = 1.0;  // threads waiting on average
inline constexpr double kIdleUtilization = 0.2;
inline constexpr size_t kMaxThreadFindings = 3;  // per kind; then "and N more"

std::vector<Finding> find_findings(const Report& report);

}  // namespace gilstat::report

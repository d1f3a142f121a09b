// Thread groups: a service's threads come in kinds (a pool's workers, a
// thread per request), and a kind is what a reader can act on.  A thread's
// group is its name with every run of digits replaced by "N":
// "Thread-1904 (process_request_thread)" -> "Thread-N (process_request_thread)",
// "ThreadPoolExecutor-0_12" -> "ThreadPoolExecutor-N_N", "native-4711" -> "native-N".
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "report/report.hpp"

namespace gilstat::report {

// Groups of at least this many threads are folded into one row by default.
inline constexpr size_t kMinGroupSize = 5;

std::string group_key(std::string_view thread_name);

// Groups `threads` by (group key, GIL).  Every group is returned, also those
// of one thread; each member appears in exactly one group, and a group's
// sums are exactly the sums of its members' fields.  Sorted by held time,
// descending (ties: key, GIL).  gilstat's own thread forms its own group.
std::vector<GroupReport> group_threads(const std::vector<ThreadReport>& threads);

}  // namespace gilstat::report

// Thread groups: a service's threads come in kinds (a pool's workers, a
// thread per request), and a kind is what a reader can act on.  A thread's
// group is its name with every run of digits replaced by "N":
// "Thread-1904 (process_request_thread)" -> "Thread-N (process_request_thread)",
// "ThreadPoolExecutor-0_12" -> "ThreadPoolExecutor-N_N", "native-4711" -> "native-N".
//
// The text table and the findings read the same rows (table_rows), so what
// a finding says about a kind of thread is what the table shows for it.
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

// The key of t's group: group_key of its name, "gilstat" for gilstat's own.
std::string group_key(const ThreadReport& t);

// Groups `threads` by (group key, GIL).  Every group is returned, also those
// of one thread; each member appears in exactly one group, and a group's
// sums are exactly the sums of its members' fields.  Sorted by held time,
// descending (ties: key, GIL).  gilstat's own thread forms its own group.
// `folded` is set on groups of at least min_group_size members.
std::vector<GroupReport> group_threads(const std::vector<ThreadReport>& threads,
                                       size_t min_group_size = kMinGroupSize);

// One row of a thread table: a folded group, or one thread (then `sums`
// is the thread as a group of one, with its own wait/hold stats).
struct TableRow {
  GroupReport sums;
  // A folded group's members, busiest first; for a thread row, the thread.
  // Pointers into the vector the rows were made from.
  std::vector<const ThreadReport*> members;
  bool folded() const { return sums.folded; }
  const ThreadReport& thread() const { return *members.front(); }  // a thread row's
};

// The rows of the text table: groups of at least min_group_size threads
// folded, the other threads one row each; by held time, descending.
std::vector<TableRow> table_rows(const std::vector<ThreadReport>& threads,
                                 size_t min_group_size = kMinGroupSize);

}  // namespace gilstat::report

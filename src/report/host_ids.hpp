// A target in another PID namespace reports its own ids (`pid 1`, tids 2,
// 3, ...); the user knows it by the host's.  This puts the host's ids beside
// them in a finished report, from the mapping the CLI read in /proc while
// recording (common/pid_namespace.hpp) or the recording stored.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "report/report.hpp"

namespace gilstat::report {

// host_pid 0 (or equal to r.pid with no differing tid): not namespaced,
// nothing changes.  Rows whose tid is missing from the map keep host_tid 0
// (the thread ended before it was looked up).
void apply_host_ids(Report& r, int host_pid, const std::map<uint32_t, uint32_t>& host_tids);

// What a text table shows in its TID column: the host tid when namespaced
// ("?" when unknown), else the tid.
std::string shown_tid(const Report& r, const ThreadReport& t);

}  // namespace gilstat::report

#include "report/host_ids.hpp"

namespace gilstat::report {

void apply_host_ids(Report& r, int host_pid, const std::map<uint32_t, uint32_t>& host_tids) {
  if (host_pid <= 0 || host_pid == r.pid) return;
  r.host_pid = host_pid;
  for (ThreadReport& t : r.threads) {
    const auto it = host_tids.find(t.tid);
    t.host_tid = it == host_tids.end() ? 0 : it->second;
  }
}

std::string shown_tid(const Report& r, const ThreadReport& t) {
  if (r.host_pid == 0) return std::to_string(t.tid);
  return t.host_tid ? std::to_string(t.host_tid) : "?";
}

}  // namespace gilstat::report

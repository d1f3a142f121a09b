#include "common/pid_namespace.hpp"

#include <cstdlib>
#include <sstream>
#include <vector>

#include "common/clock.hpp"
#include "common/procfs.hpp"

namespace gilstat {

std::optional<NsIds> parse_nspid(const std::string& status_text) {
  const auto fields = procfs::parse_status(status_text);
  const auto it = fields.find("NSpid");
  if (it == fields.end()) return std::nullopt;
  std::istringstream in(it->second);
  std::vector<long> ids;
  for (std::string word; in >> word;) {
    char* end = nullptr;
    const long v = std::strtol(word.c_str(), &end, 10);
    if (end == word.c_str() || *end != '\0' || v <= 0 || v > INT32_MAX) return std::nullopt;
    ids.push_back(v);
    if (ids.size() > 64) return std::nullopt;  // the kernel nests at most 32 levels
  }
  if (ids.empty()) return std::nullopt;
  return NsIds{static_cast<pid_t>(ids.front()), static_cast<pid_t>(ids.back())};
}

HostIds::HostIds(pid_t host_pid) : host_pid_(host_pid), inner_pid_(host_pid) {
  if (const auto text = procfs::read(host_pid, "status"))
    if (const auto ids = parse_nspid(*text)) inner_pid_ = ids->inner;
}

void HostIds::rescan() {
  scanned_ = true;
  last_scan_ns_ = monotonic_ns();
  for (const pid_t tid : procfs::task_ids(host_pid_)) {
    if (map_.size() >= kMaxEntries) return;
    const auto text = procfs::read(procfs::path(host_pid_, "task/" + std::to_string(tid) + "/status"));
    if (!text) continue;  // ended since the directory was listed
    if (const auto ids = parse_nspid(*text))
      // The first mapping of an id stays: a reused tid is one row in the report too.
      if (ids->ours == tid) map_.emplace(static_cast<uint32_t>(ids->inner), static_cast<uint32_t>(tid));
  }
}

uint32_t HostIds::host_tid(uint32_t inner_tid) {
  if (!namespaced()) return inner_tid;
  auto it = map_.find(inner_tid);
  if (it == map_.end() && (!scanned_ || monotonic_ns() - last_scan_ns_ >= kRescanNs)) {
    rescan();
    it = map_.find(inner_tid);
  }
  return it == map_.end() ? 0 : it->second;
}

}  // namespace gilstat

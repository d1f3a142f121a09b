// A target in another PID namespace (a container): the probe inside it sees
// its own ids (`pid 1`, tids 2, 3, ...), the user typed and sees the host's
// (`--pid 12647`, `top -H`).  HostIds maps the first to the second from
// /proc/PID/task/TID/status (NSpid: the id in each namespace, from ours
// inward), which the kernel writes: trusted, unlike anything the target says.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace gilstat {

// The ids of one task in the NSpid line "NSpid:\t12647\t1": ours (the first)
// and the innermost namespace's (the last).  nullopt when the line is absent
// or malformed.
struct NsIds {
  pid_t ours = 0;
  pid_t inner = 0;
};
std::optional<NsIds> parse_nspid(const std::string& status_text);

class HostIds {
 public:
  // Reads the process's own NSpid.  A process that is gone or whose status
  // cannot be read counts as not namespaced.
  explicit HostIds(pid_t host_pid);

  pid_t host_pid() const { return host_pid_; }
  // The pid the target sees for itself (== host_pid when not namespaced).
  pid_t inner_pid() const { return inner_pid_; }
  bool namespaced() const { return host_pid_ != inner_pid_; }

  // The host tid of an inner tid; 0 when not known (a thread that ended
  // before it was looked up).  An unknown tid rereads /proc/PID/task, at
  // most once per kRescanNs, so a flood of unknown tids costs little.
  uint32_t host_tid(uint32_t inner_tid);
  // Every mapping known so far (inner -> host).
  const std::map<uint32_t, uint32_t>& known() const { return map_; }
  // Drops an ended thread's mapping (a live view that folds exited threads).
  void forget(uint32_t inner_tid) { map_.erase(inner_tid); }

  static constexpr uint64_t kRescanNs = 20'000'000;
  // Bounded like the aggregator's threads: a target cannot grow it without end.
  static constexpr size_t kMaxEntries = 1u << 16;

 private:
  void rescan();

  pid_t host_pid_;
  pid_t inner_pid_;
  std::map<uint32_t, uint32_t> map_;
  uint64_t last_scan_ns_ = 0;
  bool scanned_ = false;
};

}  // namespace gilstat

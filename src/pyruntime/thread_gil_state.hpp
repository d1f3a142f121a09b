// Which GIL each thread holds or waits for, from the snapshot and the
// kernel: a thread holds a GIL when the GIL is locked and its last holder
// is the thread's state; it waits when the kernel shows it blocked in a
// futex system call on that GIL's condition variable or mutex
// (/proc/PID/task/TID/syscall: take_gil sleeps in pthread_cond_timedwait on
// `cond`, or in pthread_mutex_lock on `mutex`).  Reads only /proc.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pyruntime/runtime_reader.hpp"

namespace gilstat::pyruntime {

// /proc/PID/task/TID/syscall: "running", or the system call number and its
// first argument (the futex word for futex).
struct SyscallState {
  bool running = false;
  std::optional<int64_t> number;  // nullopt: not in a system call ("-1 ...")
  uint64_t arg0 = 0;
};
std::optional<SyscallState> parse_syscall(std::string_view text);
// nullopt when the file cannot be read (the thread exited, no permission).
std::optional<SyscallState> read_syscall(pid_t pid, pid_t tid);
// The same file read while the thread is ptrace-stopped: it shows the system
// call the stop interrupted (the one the thread sleeps in again once
// resumed), and "-1 …" for a thread stopped in user space, i.e. running.
// Read this way because right after a resume the thread is briefly
// "running" while it restarts its call.
std::optional<SyscallState> read_syscall_stopped(pid_t pid, pid_t tid);

enum class GilRole { kHolds, kWaits, kNeither, kNoGil };
const char* gil_role_name(GilRole role);  // "holds", "waits", "neither", "gil-disabled"

struct ThreadGilState {
  pid_t tid = 0;
  GilRole role = GilRole::kNeither;
  std::optional<size_t> gil;  // index in PySnapshot::gils
  std::string syscall;        // "futex 0x7f12…", "running", "" when unreadable
};

// One entry per tid of `tids` (Python threads and others alike).  A tid
// found in `seen` (read_syscall_stopped while every thread stood still) takes
// that system call; the others are read from /proc now.
std::vector<ThreadGilState> gil_states(pid_t pid, const std::vector<pid_t>& tids,
                                       const PySnapshot& snapshot,
                                       const std::map<pid_t, SyscallState>& seen = {});

}  // namespace gilstat::pyruntime

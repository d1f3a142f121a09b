// Every read of /proc the CLI makes (the probe, inside the target, has its
// own): /proc/PID/{cmdline,environ,status,comm,maps,mem,root,fd,...},
// /proc/self and /proc/loadavg.  What another process's entries contain is
// written, at least in part, by that process (its command line, its
// environment, its thread names): reads are bounded, and callers treat the
// text as untrusted.
#pragma once

#include <sys/types.h>

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gilstat::procfs {

// Larger than anything the kernel shows for these files (argv + environ are
// bounded by the stack limit); a read stops there.
inline constexpr size_t kMaxFileBytes = 16u << 20;

// "/proc/PID/ENTRY"; "/proc/PID" for an empty entry.
std::string path(pid_t pid, std::string_view entry = {});
// "/proc/self/ENTRY".
std::string self(std::string_view entry);

// The contents of a /proc file (at most kMaxFileBytes), or nullopt with
// *error_number set to errno when it cannot be opened.
std::optional<std::string> read(const std::string& file, int* error_number = nullptr);
std::optional<std::string> read(pid_t pid, std::string_view entry, int* error_number = nullptr);

// A NUL-separated list: /proc/PID/cmdline, /proc/PID/environ.  Empty when
// unreadable.
std::vector<std::string> nul_list(pid_t pid, std::string_view entry);
// The command line with its arguments joined by spaces ("" when unreadable).
std::string cmdline(pid_t pid);

// "Key:\tvalue" lines of a status file, values without leading blanks.
std::map<std::string, std::string> parse_status(const std::string& text);

// open(2) of /proc/PID/mem with these flags (O_CLOEXEC added): -1 and errno
// on failure.
int open_mem(pid_t pid, int flags);

// The tids in /proc/PID/task (empty when it cannot be read: the process is
// gone, or not ours to see).
std::vector<pid_t> task_ids(pid_t pid);
// The state letter of /proc/PID/task/TID/stat (R, S, D, T, t, Z, X, ...),
// or nullopt when unreadable.
std::optional<char> task_state(pid_t pid, pid_t tid);

// The 1-minute load average, -1 when unknown.
double loadavg_1min();

}  // namespace gilstat::procfs

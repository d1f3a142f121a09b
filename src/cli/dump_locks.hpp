// Following the locks the threads of a dump are blocked in, and the verdict
// on a stuck GIL: a deadlock (the holder waits for a lock whose owner waits
// for the GIL), or a holder that simply does not let go.  Everything read
// here comes from the target (its memory, /proc): a lock's owner is only
// believed when it is a thread of the process.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "attach/remote_memory.hpp"
#include "pyruntime/thread_gil_state.hpp"

namespace gilstat::cli {

// What a dump knows of one thread, for following its lock.
struct LockThread {
  pid_t tid = 0;
  std::string name;
  pyruntime::GilRole role = pyruntime::GilRole::kNeither;
  std::optional<size_t> gil;
  std::vector<std::string> native_frames;  // symbolised, innermost first; empty: unknown
};

struct LockWait {
  pid_t tid = 0;
  uint64_t address = 0;        // the futex word the thread sleeps on
  std::string kind;            // "pthread mutex", "Python lock", "futex"
  std::optional<pid_t> owner;  // nullopt: the lock does not record it, or it was not believable
};

// The lock each thread sleeps on (a futex wait that is not on a GIL),
// read from /proc/PID/task/TID/syscall; a glibc mutex's owner from its
// `__data.__owner` field.
std::vector<LockWait> follow_locks(pid_t pid, const attach::RemoteMemory& memory,
                                   const std::vector<LockThread>& threads);

struct Verdict {
  std::string kind;  // "deadlock", "holder_blocked", "holder_not_releasing", "" (none)
  std::string text;  // one plain sentence
  pid_t holder = 0;
  pid_t other = 0;    // deadlock: the lock's owner, waiting for the GIL
  uint64_t lock = 0;  // the lock the holder waits for
  std::optional<size_t> gil;
};

// The verdict on each GIL that is held while others wait for it.
std::vector<Verdict> judge(const std::vector<LockThread>& threads,
                           const std::vector<LockWait>& locks);

}  // namespace gilstat::cli

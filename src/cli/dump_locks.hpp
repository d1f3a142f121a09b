// Following the locks the threads of a dump are blocked in, and the verdict
// on a stuck GIL or a cycle of locks: a deadlock (the holder waits for a
// lock whose owner waits, maybe through other locks, for the GIL; or
// threads that wait for each other's locks), or a holder that simply does
// not let go.  Everything read here comes from the target (its memory,
// /proc): a lock's owner is only believed when it is a thread of the
// process.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "attach/process_maps.hpp"
#include "attach/remote_memory.hpp"
#include "gilstat/cpython_objects.hpp"
#include "pyruntime/thread_gil_state.hpp"

namespace gilstat::cli {

// What a dump knows of one thread, for following its lock.
struct LockThread {
  pid_t tid = 0;
  std::string name;
  pyruntime::GilRole role = pyruntime::GilRole::kNeither;
  std::optional<size_t> gil;
  std::vector<std::string> native_frames;  // symbolised, innermost first; empty: unknown
  bool frames_named = false;               // a symbol names one of the innermost frames
  uint64_t pthread_id = 0;                 // Python threads: the ident an RLock names its owner by
  uint64_t stack_pointer = 0;              // of the innermost native frame; 0: unknown
  // Its system call read while it was stopped; absent: read /proc when needed.
  std::optional<pyruntime::SyscallState> syscall = std::nullopt;
};

struct LockWait {
  pid_t tid = 0;
  // The futex word the thread sleeps on; for an RLock, the _thread.RLock
  // object (what id() gives in the program).
  uint64_t address = 0;
  // "pthread mutex", "RLock", "Python lock", "futex" (named frames, none a
  // lock's), "unknown" (no named native frame to tell by).
  std::string kind;
  std::optional<pid_t> owner;  // nullopt: the lock does not record it, or it was not believable
  uint64_t owner_count = 0;    // RLock: how many times its owner holds it
};

// How to recognise a _thread.RLock in the target (nullptr members: the
// version has no measured layout, RLocks are not followed).
struct RLockProbe {
  const cpython::ObjectLayout* objects = nullptr;
  const cpython::RLockLayout* rlock = nullptr;
  int minor = 0;
  // The target's maps: only words pointing into writable memory other than
  // the thread's own stack are tried as objects (nullptr: every word).
  const attach::ProcessMaps* maps = nullptr;
};

// The lock each thread sleeps on (a futex wait that is not on a GIL),
// read from /proc/PID/task/TID/syscall; a glibc mutex's owner from its
// `__data.__owner` field, an RLock's from the object, found on the thread's
// stack.
std::vector<LockWait> follow_locks(pid_t pid, const attach::RemoteMemory& memory,
                                   const std::vector<LockThread>& threads,
                                   const RLockProbe& rlocks);

struct Verdict {
  // "deadlock", "holder_blocked", "holder_not_releasing", "" (none)
  std::string kind;
  std::string text;   // one plain sentence
  pid_t holder = 0;   // the GIL's holder; 0 for a cycle of locks without a GIL
  pid_t other = 0;    // deadlock: the owner of the lock `holder` (or the first thread) waits for
  uint64_t lock = 0;  // the lock the holder (or the first thread) waits for
  std::optional<size_t> gil;
  std::vector<pid_t> cycle;  // deadlock: its threads in wait-for order
};

// The verdict on each GIL that is held while others wait for it, then one
// per cycle of threads waiting for each other's locks.
std::vector<Verdict> judge(const std::vector<LockThread>& threads,
                           const std::vector<LockWait>& locks);

}  // namespace gilstat::cli

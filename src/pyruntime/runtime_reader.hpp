// The state of a CPython process read from outside, memory only: its
// interpreters, their thread states (pthread id, tid, `threading` name,
// Python stack) and their GILs (locked, holder).  Nothing is done to the
// target: no stop, no ptrace, no injection, no GIL; the target keeps running
// while it is read, so a structure can change under the reader (a torn read)
// and every walk is bounded (counts, depths, cycles).  A part that cannot be
// read is an `error` string on that part, never a crash or a wild read.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "attach/remote_memory.hpp"

namespace gilstat::pyruntime {

using attach::RemoteAddr;

inline constexpr size_t kMaxInterpreters = 64;
inline constexpr size_t kMaxThreads = 4096;
inline constexpr size_t kMaxFrames = 512;

struct PyFrame {
  std::string function;  // qualified name where the version has one (3.11+)
  std::string file;
  int line = 0;  // 0: unknown
};

struct PyThread {
  RemoteAddr tstate;
  int64_t interp_id = -1;
  uint64_t pthread_id = 0;     // tstate->thread_id
  pid_t tid = 0;               // 0: not found
  std::string name;            // `threading` name; empty when unknown
  std::string name_source;     // "threading" (Thread._name), "main" (the process's main thread)
  std::vector<PyFrame> stack;  // innermost first
  bool stack_truncated = false;
  std::string stack_error;  // why the stack stops early (torn read, bad pointer)
};

struct PyGil {
  RemoteAddr address;
  std::vector<int64_t> interp_ids;
  int32_t locked = -1;  // -1 not created, 0 free, 1 held
  RemoteAddr last_holder;
  uint64_t switch_number = 0;
  std::optional<int32_t> enabled;  // free-threaded builds: 0 = the GIL is off
  RemoteAddr cond, mutex;          // where its waiters sleep (futex addresses)
  size_t cond_size = 0, mutex_size = 0;
};

struct PySnapshot {
  int minor = 0;
  bool free_threaded = false;
  std::vector<PyThread> threads;
  std::vector<PyGil> gils;
  std::vector<std::string> problems;  // parts that could not be read
};

// Reads the runtime of `pid` (py_runtime and version_hex from
// attach::preflight).  Throws gilstat::Error (exit 3) only when the version
// has no layout here; everything else lands in `problems`.
PySnapshot read_runtime(const attach::RemoteMemory& memory, pid_t pid, RemoteAddr py_runtime,
                        uint32_t version_hex);

// The Python stack of each GIL's holder, for a held-time profile sampled
// often: each sample reads the GILs' `locked` and `last_holder` words and the
// holder's thread state (its tid) and frames only; the GILs are read afresh
// every kRefreshNs.  Code objects are cached between refreshes.
struct HolderSample {
  uint64_t gil = 0;  // the GIL's address
  pid_t tid = 0;
  std::vector<PyFrame> stack;  // innermost first
};

class HolderSampler {
 public:
  // Throws gilstat::Error (exit 3) when the version has no layout here.
  HolderSampler(const attach::RemoteMemory& memory, pid_t pid, RemoteAddr py_runtime,
                uint32_t version_hex);
  ~HolderSampler();
  // One sample per GIL held now by a known thread whose stack read whole.
  std::vector<HolderSample> sample(uint64_t now_ns);

  static constexpr uint64_t kRefreshNs = 1'000'000'000;
  static constexpr uint64_t kRetryNs = 20'000'000;  // while no GIL is listed

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// tid -> `threading` name of the threads read (those with a name).
std::vector<std::pair<pid_t, std::string>> thread_names(const PySnapshot& snapshot);

}  // namespace gilstat::pyruntime

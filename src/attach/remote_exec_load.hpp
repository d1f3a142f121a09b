// Loading a shared library into a CPython 3.14+ process through PEP 768 and
// calling `int64_t fn(const char*)` in it: the remote-exec counterpart of
// load_library_and_call (load_library.hpp).  No thread is stopped; the main
// thread runs a small generated Python script at its next safe point, which
// loads the library with ctypes, calls the function (the GIL released, as for
// any ctypes call) and hands the return value back.
//
// The script must be a file the target itself can open, so it is staged in the
// target's own filesystem: a fresh 0700 directory in the target's temporary
// directory ($TMPDIR from its environment, else /tmp, /var/tmp, /dev/shm),
// created through /proc/PID/root (the same path across mount namespaces and
// containers) and handed to the target's uid and gid.  In it:
//
//   attach.py  the script; its path (as the target sees it) is what goes into
//              the thread state
//   request    the claim token.  The script's first act is to rename it to
//              `claimed`; gilstat withdraws a request by unlinking it.  Exactly
//              one side wins, so a withdrawn script that still runs (it read
//              the pending flag an instant before the withdrawal) does nothing.
//   library    a copy of the library, only when the target cannot see or read
//              ours (another mount namespace, a uid that cannot read our
//              directories).  The script copies it into a memfd named
//              "gilstat:<name>" and loads /proc/self/fd/N, as the ptrace path
//              does, so a noexec /tmp does not matter.
//   result     written by the script through result.tmp + rename (never half
//              a file): "ok <return value> <name loaded>" or "error <what>".
//
// A script that runs after gilstat stopped waiting (gilstat was SIGKILLed
// between writing the request and withdrawing it) finds its deadline passed,
// removes the staging files and does nothing.
//
// gilstat removes the directory and its files when done, whatever happened.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>

#include "attach/preflight.hpp"
#include "attach/remote_exec.hpp"

namespace gilstat::attach {

struct RemoteExecOptions {
  // For the main thread to pick the request up (reach a safe point).
  std::chrono::milliseconds safe_point_timeout{2000};
  // For the script, once picked up, to finish (imports ctypes, dlopen, call).
  std::chrono::milliseconds run_timeout{10000};
};

struct RemoteExecResult {
  int64_t return_value = 0;  // what the function returned
  std::string loaded_as;     // the name the target's ctypes loaded
  bool via_memfd = false;
  std::string script_path;                      // as the target saw it
  std::chrono::microseconds until_picked_up{};  // request written -> flag cleared
  std::chrono::microseconds elapsed{};          // whole operation
};

// `library_path` is a path in our mount namespace, or a bare soname to reuse a
// library the target has already loaded.  Throws RemoteExecNotRun when
// nothing ran in the target (no place to stage the files, no safe point
// within the timeout: the request is withdrawn first), gilstat::Error when the
// script ran and failed or gave no answer in time.
RemoteExecResult remote_exec_load_and_call(const PreflightResult& process,
                                           const RemoteExecTarget& target,
                                           const std::string& library_path,
                                           const std::string& symbol, const std::string& argument,
                                           const RemoteExecOptions& options = {});

// The generated script (exposed for unit tests).  Byte strings are embedded as
// escaped bytes literals, so any path survives.  `stale_after` is a
// CLOCK_MONOTONIC time (seconds, as the target's time.monotonic() reads it)
// after which gilstat no longer waits for the script: one that runs later (its
// gilstat was SIGKILLed before it could withdraw the request) only removes its
// staging files and does nothing else.
std::string remote_exec_script(const std::string& directory, const std::string& library,
                               const std::string& library_copy, const std::string& memfd_name,
                               const std::string& symbol, const std::string& argument,
                               double stale_after);

}  // namespace gilstat::attach

// PEP 768 (`sys.remote_exec`, CPython 3.14+) driven from outside, in C++.
//
// The protocol is the one CPython's own sys.remote_exec speaks: in the main
// thread state of the main interpreter, write a script path into
// remote_debugger_support.debugger_script_path, set debugger_pending_call to
// 1, and set _PY_EVAL_PLEASE_STOP_BIT in the thread's eval_breaker.  The next
// time that thread checks its eval breaker (a loop back-edge or the return of
// a call, while it runs bytecode), _Py_HandlePending clears the flag, copies
// the path and runs the file with a fresh globals dict.  Every offset comes
// from the target's own _Py_DebugOffsets (positions in cpython_layout.hpp).
//
// These are the only writes gilstat makes into a target's memory outside a
// ptrace stop: process_vm_writev, or /proc/PID/mem when that is refused.  No
// thread is stopped, so the eval_breaker update is a plain read-modify-write
// (as CPython's own is): a bit the target sets or clears in between can be
// undone, which costs at most one extra trip through _Py_HandlePending or a
// GIL drop request repeated at the next switch interval.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "attach/remote_memory.hpp"
#include "common/error.hpp"

namespace gilstat::attach {

// Remote-exec could not be used and nothing ran in the target (remote
// debugging disabled, no safe point in time, request withdrawn, ...): the
// caller may attach another way.
class RemoteExecNotRun : public Error {
 public:
  using Error::Error;
};

// Where the request goes in one process.
struct RemoteExecTarget {
  pid_t pid = 0;
  int minor = 0;
  RemoteAddr interpreter;   // the main interpreter (interpreters.head)
  RemoteAddr main_tstate;   // its main thread state
  RemoteAddr pending_call;  // int32_t
  RemoteAddr script_path;   // char[script_path_size]
  uint64_t script_path_size = 0;
  RemoteAddr eval_breaker;  // uintptr_t
  bool enabled = false;     // config.remote_debug == 1
};

// Reads _Py_DebugOffsets at `py_runtime` and follows it to the main thread
// state.  Throws RemoteExecNotRun for a version without PEP 768 (< 3.14; exit
// code kExitUsage), a runtime that is not initialised yet, or offsets that do
// not make sense; never writes.  `enabled` is false when remote debugging is
// disabled in the target (the caller says why: disabled_reason).
RemoteExecTarget locate_remote_exec(const RemoteMemory& memory, pid_t pid, RemoteAddr py_runtime,
                                    uint32_t version_hex);

// Why remote debugging is off in `pid`, from its environment and command line
// (PYTHON_DISABLE_REMOTE_DEBUG, -X disable-remote-debug), else the build.
std::string disabled_reason(pid_t pid);

// Writes the request: path, pending flag, eval-breaker bit, in that order (the
// flag is what the target checks; the path must be complete before it).
// Throws RemoteExecNotRun when another request is already pending, the path
// does not fit, or the memory cannot be written.
void send_remote_exec(const RemoteExecTarget& target, const RemoteMemory& memory,
                      std::string_view script_path);

// Whether the request is still pending (nullopt: unreadable, e.g. the process
// exited).
std::optional<bool> remote_exec_pending(const RemoteExecTarget& target, const RemoteMemory& memory);

// Withdraws a request the target has not picked up: clears the pending flag,
// then the path's first byte (CPython skips an empty path), so a thread that
// read the flag an instant before finds no path unless it had already copied
// it; the script's claim token (remote_exec_load.hpp) covers that last case.
// The eval-breaker bit stays: a spurious "please stop" only makes the thread
// drop and retake the GIL once.  Never throws; false when a write failed.
bool withdraw_remote_exec(const RemoteExecTarget& target);

}  // namespace gilstat::attach

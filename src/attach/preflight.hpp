// Pre-flight for attaching: is there such a process, may we ptrace it, is it
// free (no other tracer), is it CPython, which version.  Reads /proc and the
// target's memory (process_vm_readv); never stops or ptraces the target.
// Every failure is a gilstat::Error with one line, a hint and an exit code.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

#include "attach/remote_memory.hpp"

namespace gilstat::attach {

struct PreflightResult {
  pid_t pid = 0;
  std::string object_path;        // interpreter object as the target names it (maps)
  std::string object_path_local;  // the same file as seen from here (what we opened)
  bool shared_libpython = false;  // libpython3.X.so, not the executable itself
  std::string version;            // "3.12.1", "3.13.0rc2"; "3.9" when from a file name
  uint32_t version_hex = 0;       // PY_VERSION_HEX, e.g. 0x030c01f0
  std::string version_source;     // "Py_Version", "Py_GetVersion", "file name"
  uint64_t load_bias = 0;         // runtime address - ELF address in that object
  RemoteAddr py_runtime;          // &_PyRuntime in the target
  uid_t uid = 0;                  // the target's effective uid and gid
  gid_t gid = 0;
};

// Runs every check in order (process, permission, tracer, CPython, version)
// and throws gilstat::Error at the first failure:
//   no such process / zombie / a thread id   -> exit 1
//   ptrace not permitted                     -> exit 4 (kExitPermission)
//   already traced by another process        -> exit 1
//   not CPython (no object defines _PyRuntime), or a version outside
//   3.8 - 3.15                               -> exit 3 (kExitNotCPython)
// `refuse_traced` false skips the tracer check: PEP 768 remote-exec only
// writes memory, which works while a debugger is attached.
PreflightResult preflight(pid_t pid, bool refuse_traced = true);
// The tracer check alone (exit 1 when another process traces `pid`).
void check_not_traced(pid_t pid);

// --- the pieces, exposed for unit tests -------------------------------------

// What decides whether ptrace(pid) is allowed, gathered from /proc.
struct PermissionFacts {
  std::optional<int> ptrace_scope;   // /proc/sys/kernel/yama/ptrace_scope; nullopt: no Yama
  bool cap_sys_ptrace = false;       // in our effective set
  uid_t our_uid = 0;                 // our euid (the kernel compares fsuid, which follows it)
  uid_t target_uids[3] = {0, 0, 0};  // real, effective, saved
  gid_t our_gid = 0;
  gid_t target_gids[3] = {0, 0, 0};
  bool we_are_ancestor = false;  // the target descends from us (Yama mode 1 allows that)
};

// nullopt when the facts allow attaching; otherwise the reason (one line).
std::optional<std::string> permission_problem(const PermissionFacts& facts);
// The hint printed under any permission error.
std::string permission_hint(const PermissionFacts& facts);

// PY_VERSION_HEX from "3.12.1", "3.13.0rc2", "3.14.0a1+" or "3.9"; nullopt
// when not a CPython 3.x version string.
std::optional<uint32_t> parse_python_version(std::string_view text);
// "3.12.1" / "3.13.0rc2" from PY_VERSION_HEX.
std::string format_python_version(uint32_t hex);
// Supported: 3.8 - 3.15 inclusive.
bool is_supported_python_version(uint32_t hex);

}  // namespace gilstat::attach

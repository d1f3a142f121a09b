// ptrace-dlopen: load a shared library into a running process and call one of
// its functions, `int64_t fn(const char*)`, on one stopped thread.
//
// Library path across mount namespaces: when the file the target would see at
// `library_path` (/proc/PID/root + path) is the same inode as ours, the target
// dlopens the path itself.  Otherwise the bytes go into a memfd created in the
// target (remote memfd_create, written by us through /proc/PID/fd/N) and the
// target dlopens /proc/self/fd/N; the fd is closed after dlopen (the mapping
// keeps the file alive).  memfd over copying the file into the target's /tmp or
// /dev/shm because it needs no writable, exec-mountable directory in the
// target's filesystem (Docker mounts /dev/shm noexec; read-only root
// filesystems are common), leaves no file behind, and has no ownership or
// permission mismatch between our uid and the target's.  The object then shows
// in the target's maps as "/memfd:gilstat:<name> (deleted)".
#pragma once

#include <sys/types.h>
#include <sys/user.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "attach/process_maps.hpp"
#include "attach/remote_memory.hpp"

namespace gilstat::attach {

enum class LibraryTransfer {
  kAuto,   // the path when the target sees the same file there, else a memfd
  kPath,   // always dlopen the path
  kMemfd,  // always through a memfd
};

struct LoadOptions {
  // Thread to borrow; 0: the main thread, or another thread of the process
  // when the main thread does not reach a safe stop point (stop_point.hpp).
  pid_t tid = 0;
  LibraryTransfer transfer = LibraryTransfer::kAuto;
};

struct LoadResult {
  RemoteAddr handle;         // dlopen's handle in the target
  RemoteAddr function;       // the symbol's address in the target
  int64_t return_value = 0;  // what the function returned
  std::string loaded_as;     // the name the target's dlopen was given
  bool via_memfd = false;
  std::string loader;  // e.g. "dlopen@GLIBC_2.34 in /lib/x86_64-linux-gnu/libc.so.6"
  std::chrono::microseconds elapsed{};   // whole operation, from reading maps to detach
  std::chrono::microseconds stopped{};   // how long the borrowed thread was stopped
  std::vector<int> redelivered_signals;  // signals that arrived during the call
  pid_t borrowed_tid = 0;                // the thread that made the calls
  int stops = 0;                         // stops until one was safe (1: the first stop was)
};

// Whether process `pid` can open `resolved_path` (absolute, symlinks resolved,
// in our mount namespace) as the same file we see: the same inode through
// /proc/PID/root, and read permission for the target's effective uid and gid
// on the file plus search permission on every directory above it (mode bits
// only; supplementary groups and ACLs are ignored, so "no" may be too
// cautious, which only costs a copy).
bool target_can_open(pid_t pid, const std::string& resolved_path);

// Where the target's dynamic loader entry points are.
struct TargetLoader {
  RemoteAddr dlopen;
  RemoteAddr dlsym;
  RemoteAddr dlerror;         // null for __libc_dlopen_mode (no dlerror state)
  RemoteAddr errno_location;  // null when libc does not export __errno_location
  RemoteAddr syscall_instruction;
  int dlopen_flags = 0;
  std::string description;
};

// Resolves dlopen/dlsym in the target from its maps and the ELF files it has
// mapped: glibc >= 2.34 exports them from libc.so.6; older glibc from
// libdl.so.2 when it is loaded, else __libc_dlopen_mode/__libc_dlsym from libc;
// musl from its ld-musl object.  Throws gilstat::Error.
TargetLoader resolve_loader(pid_t pid, const ProcessMaps& maps, const RemoteMemory& memory);

// Loads `library_path` (a path in our mount namespace) into process `pid`,
// looks up `symbol` and calls it with `argument`.  The borrowed thread is
// stopped for the duration and restored exactly; other threads keep running.
// Nothing is called from a thread whose stack is inside the loader or the
// allocator (stop_point.hpp): threads are stopped again at growing intervals
// for up to 3/4 of `timeout`, then the call fails with "the target is busy in
// the dynamic loader or allocator; try again" and the process untouched.
// Loading the same path again returns the existing handle (dlopen's own
// reference counting); through a memfd every load is a new copy, so callers
// that want reuse look for "/memfd:gilstat:<name>" in the target's maps first.
// The library is never unloaded.  Throws gilstat::Error on any failure (after
// restoring the thread), including when `timeout` passes.
LoadResult load_library_and_call(pid_t pid, const std::string& library_path,
                                 const std::string& symbol, const std::string& argument,
                                 std::chrono::milliseconds timeout = std::chrono::seconds(2),
                                 const LoadOptions& options = {});

}  // namespace gilstat::attach

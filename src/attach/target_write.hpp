// The one place that writes into another process: its memory (the ptrace
// injector's code, data and restored bytes; the PEP 768 request fields) and
// the memfd it is given the probe library in.  Reads go through
// remote_memory.hpp; nothing else in gilstat changes a target.
#pragma once

#include <sys/types.h>

#include <span>

#include "attach/remote_memory.hpp"

namespace gilstat::attach {

// Writes into the memory of a process whose thread gilstat holds stopped
// under ptrace, through /proc/PID/mem (which also writes read-only pages,
// such as the code the injector borrows).  Opened on the first write.
class TargetMemoryWriter {
 public:
  explicit TargetMemoryWriter(pid_t pid) : pid_(pid) {}
  ~TargetMemoryWriter();
  TargetMemoryWriter(const TargetMemoryWriter&) = delete;
  TargetMemoryWriter& operator=(const TargetMemoryWriter&) = delete;

  // Throws gilstat::Error unless every byte was written.
  void write(RemoteAddr addr, std::span<const std::byte> bytes);

 private:
  pid_t pid_;
  int fd_ = -1;
};

// Writes into a process that keeps running (PEP 768: nothing is stopped):
// process_vm_writev, or /proc/PID/mem where that is refused (seccomp, old
// kernels).  Both pass the same ptrace-access check.  False unless every
// byte was written (a partial write leaves the rest unchanged).
bool write_running_target(pid_t pid, RemoteAddr addr, std::span<const std::byte> bytes);

// Fills the file behind the target's descriptor `fd` (a memfd the injector
// made it create) through /proc/PID/fd/FD.  Throws gilstat::Error.
void write_target_fd(pid_t pid, int fd, std::span<const std::byte> bytes);

}  // namespace gilstat::attach

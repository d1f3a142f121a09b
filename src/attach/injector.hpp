// Remote syscalls and function calls in a thread stopped by a PtraceSession.
//
// The first syscall (the mmap of our private pages) executes a `syscall`
// instruction that already exists in the target's libc text, single-stepped,
// so no byte of the target's code is ever modified.  The pages are:
//
//   base            code page, R-X: `call *%rax; int3` (+ int3 padding)
//   base + 4 KiB    stack, RW, grows down toward the code page (which, not
//                   being writable, doubles as the guard page)
//   stack top       16-byte aligned: the callee sees rsp % 16 == 8, per ABI
//   stack top ..    data, RW: strings we pass by address
//
// A call sets rip = trampoline, rax = function, rdi..r9 = arguments,
// rsp = stack top and orig_rax = -1 (so a syscall the thread was stopped in
// is not restarted on top of our call), resumes, and collects rax at the
// int3's SIGTRAP.  The thread's own stack and red zone are never touched.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "attach/process_maps.hpp"
#include "attach/ptrace_session.hpp"
#include "attach/remote_memory.hpp"

namespace gilstat::attach {

// A `syscall` instruction (0f 05) in the executable mappings of `object_path`.
std::optional<RemoteAddr> find_syscall_instruction(const RemoteMemory& memory,
                                                   const ProcessMaps& maps,
                                                   const std::string& object_path);

class Injector {
 public:
  static constexpr size_t kStackSize = 256 * 1024;

  // Maps the private pages in the stopped thread of `session`, `data_size`
  // bytes of data included.  Throws gilstat::Error.
  Injector(PtraceSession& session, RemoteAddr syscall_instruction, size_t data_size,
           Clock::time_point deadline);
  // finish() when not done yet, with a fresh short deadline; never throws.
  ~Injector();
  Injector(const Injector&) = delete;
  Injector& operator=(const Injector&) = delete;

  // Every remote operation must complete before this time point.
  void set_deadline(Clock::time_point deadline) { deadline_ = deadline; }

  // A raw syscall in the target: the kernel's return value (-errno on failure).
  int64_t syscall(long number, std::initializer_list<uint64_t> args = {});
  // Calls `function` (System V ABI, up to 6 integer arguments) and returns rax.
  uint64_t call(RemoteAddr function, std::initializer_list<uint64_t> args = {});

  // Copies bytes / a NUL-terminated string into the data area.
  RemoteAddr push_bytes(std::span<const std::byte> bytes);
  RemoteAddr push_string(std::string_view text);

  // Keeps the hijacked thread's errno: reads it now (via the target's
  // __errno_location) and writes it back in finish().
  void preserve_errno(RemoteAddr errno_location_function, const RemoteMemory& memory);
  // A file descriptor opened in the target that finish() closes.
  void close_on_finish(int remote_fd) { remote_fds_.push_back(remote_fd); }

  // Closes the recorded fds, restores errno, unmaps the private pages.
  // Throws gilstat::Error on failure.
  void finish();

  RemoteAddr base() const { return base_; }
  size_t mapped_size() const { return size_; }

 private:
  PtraceSession& session_;
  RemoteAddr syscall_insn_;
  Clock::time_point deadline_;
  RemoteAddr base_;
  size_t size_ = 0;
  RemoteAddr stack_top_;
  RemoteAddr data_next_;
  RemoteAddr data_end_;
  std::optional<RemoteAddr> errno_address_;
  int saved_errno_ = 0;
  std::vector<int> remote_fds_;
  bool finished_ = false;
};

}  // namespace gilstat::attach

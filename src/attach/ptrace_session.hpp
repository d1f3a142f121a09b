// The only place gilstat calls ptrace and waitpid on a foreign process.
//
// A PtraceSession seizes ONE thread (PTRACE_SEIZE + PTRACE_INTERRUPT), saves
// all of its registers (general purpose, and the full XSAVE image for x87/SSE/
// AVX/... state), and on detach restores them exactly and lets the thread go.
// The other threads of the process keep running throughout.
//
// Signals: while the thread runs code for us, a signal that reaches it is
// suppressed and recorded (the thread must get back to our trap), then
// re-delivered after the registers are restored: the first through
// PTRACE_DETACH's data argument with its original siginfo, the rest with
// tgkill / kill / rt_tgsigqueueinfo according to where they came from.  A
// synchronous fault (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS raised by
// the code we made it run) is ours, aborts the call and is not re-delivered.
#pragma once

#include <signal.h>
#include <sys/types.h>
#include <sys/user.h>

#include <chrono>
#include <cstddef>
#include <span>
#include <vector>

#include "attach/remote_memory.hpp"
#include "attach/target_write.hpp"

namespace gilstat::attach {

using Clock = std::chrono::steady_clock;

struct SavedRegisters {
  user_regs_struct gp{};
  std::vector<std::byte> fp;  // NT_X86_XSTATE image, or an NT_PRFPREG (FXSAVE) image
  unsigned fp_regset = 0;     // NT_X86_XSTATE or NT_PRFPREG
};

enum class Resume { kContinue, kSingleStep };

// The error for a refused PTRACE_SEIZE of `tid` (errno `error_number`): exit
// code 4 with the permission hint for EPERM / EACCES.
[[noreturn]] void throw_seize_failed(pid_t pid, pid_t tid, int error_number);

class PtraceSession {
 public:
  // Seizes thread `tid` of process `pid` (tid 0 or pid: the main thread),
  // interrupts it, waits until `deadline` for it to stop and saves its
  // registers.  Throws gilstat::Error (exit code 4 when ptrace is refused).
  PtraceSession(pid_t pid, pid_t tid, Clock::time_point deadline);
  // detach() unless already done; never throws.
  ~PtraceSession();
  PtraceSession(const PtraceSession&) = delete;
  PtraceSession& operator=(const PtraceSession&) = delete;

  pid_t pid() const { return pid_; }
  pid_t tid() const { return tid_; }
  const SavedRegisters& saved() const { return saved_; }
  // Signals recorded so far, in arrival order, to be re-delivered on detach.
  const std::vector<siginfo_t>& deferred_signals() const { return deferred_; }

  user_regs_struct registers() const;
  void set_registers(const user_regs_struct& regs);
  // Loads the x87/SSE state a freshly started function expects (FCW 0x37f,
  // MXCSR 0x1f80, empty x87 stack): the thread may have been stopped anywhere.
  void set_clean_fp_state();
  // Writes through /proc/PID/mem (target_write.hpp), which lets a tracer
  // write read-only pages.
  void write_memory(RemoteAddr addr, std::span<const std::byte> bytes);

  // Resumes the thread and waits until it stops with SIGTRAP at
  // `expected_rip`; returns the registers at that stop.  Throws gilstat::Error
  // when the thread faults, the process exits, or `deadline` passes; after a
  // fault or a timeout the thread is stopped again, so the caller can still
  // clean up and detach.
  user_regs_struct run_until(RemoteAddr expected_rip, Resume how, Clock::time_point deadline);

  // Restores the saved registers, detaches, re-delivers the recorded signals.
  // Throws gilstat::Error when the thread cannot be restored.
  void detach();

 private:
  enum class State { kRunning, kStopped, kDetached, kGone };

  void stop_and_save(Clock::time_point deadline);
  void resume(Resume how);
  // Waits for a state change of the thread until `deadline`; false on timeout.
  bool wait(int* status, Clock::time_point deadline);
  [[noreturn]] void throw_exit(int status, const char* while_doing);
  void stop_after_timeout();
  void redeliver(const siginfo_t& info) const;

  pid_t pid_;
  pid_t tid_;
  State state_ = State::kRunning;
  bool at_signal_delivery_stop_ = false;  // PTRACE_DETACH may inject a signal only here
  bool modified_ = false;
  SavedRegisters saved_;
  std::vector<siginfo_t> deferred_;
  TargetMemoryWriter memory_writer_;
};

}  // namespace gilstat::attach

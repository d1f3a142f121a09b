#include "attach/ptrace_session.hpp"

#include <elf.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "common/error.hpp"

namespace gilstat::attach {

namespace {

// After a timeout the thread is interrupted; this is how long it gets to stop.
constexpr auto kStopGrace = std::chrono::seconds(2);
// Large enough for any XSAVE image (AMX makes it ~11 KiB); the kernel reports
// the real size.
constexpr size_t kMaxXstateSize = 64 * 1024;

std::string errno_text(int e) { return std::strerror(e); }

bool is_synchronous_fault(const siginfo_t& info) {
  switch (info.si_signo) {
    case SIGSEGV:
    case SIGBUS:
    case SIGILL:
    case SIGFPE:
    case SIGTRAP:
    case SIGSYS:
      // si_code > 0: raised by the kernel for this thread's own instruction
      // (SI_USER, SI_TKILL, SI_QUEUE... are <= 0: sent by someone).
      return info.si_code > 0;
    default:
      return false;
  }
}

std::string describe_fault(const siginfo_t& info, const user_regs_struct& regs) {
  return fmt::format("{} (si_code {}) at rip={:#x}, fault address {:#x}",
                     sigabbrev_np(info.si_signo) ? sigabbrev_np(info.si_signo) : "signal",
                     info.si_code, regs.rip, reinterpret_cast<uint64_t>(info.si_addr));
}

}  // namespace

void throw_seize_failed(pid_t pid, pid_t tid, int error_number) {
  if (error_number == ESRCH) throw Error(fmt::format("no thread {} in process {}", tid, pid));
  if (error_number == EPERM || error_number == EACCES) {
    throw Error(
        fmt::format("ptrace(PTRACE_SEIZE, {}) was refused: {}", tid, errno_text(error_number)),
        "run as the target's user or root; in a container add `--cap-add SYS_PTRACE`",
        kExitPermission);
  }
  throw Error(fmt::format("ptrace(PTRACE_SEIZE, {}) failed: {}", tid, errno_text(error_number)));
}

PtraceSession::PtraceSession(pid_t pid, pid_t tid, Clock::time_point deadline)
    : pid_(pid), tid_(tid == 0 ? pid : tid), memory_writer_(pid) {
  // A non-positive pid would make kill()/tgkill() in redeliver() address a
  // whole process group or every process.
  if (pid_ <= 0 || tid_ <= 0) {
    state_ = State::kDetached;
    throw Error(fmt::format("invalid pid {} / tid {}", pid, tid), {}, kExitUsage);
  }
  if (ptrace(PTRACE_SEIZE, tid_, nullptr, nullptr) != 0) {
    const int e = errno;
    state_ = State::kDetached;
    throw_seize_failed(pid_, tid_, e);
  }
  try {
    stop_and_save(deadline);
  } catch (...) {
    if (state_ == State::kStopped) {
      ptrace(PTRACE_DETACH, tid_, nullptr, nullptr);
      state_ = State::kDetached;
    }
    // A thread that never stopped stays seized; the kernel detaches it when
    // this process exits (nothing was changed in it).
    throw;
  }
}

PtraceSession::~PtraceSession() {
  try {
    detach();
  } catch (...) {
    // Nothing better to do in a destructor: detach() already let go of the
    // thread where it could.
  }
}

void PtraceSession::stop_and_save(Clock::time_point deadline) {
  if (ptrace(PTRACE_INTERRUPT, tid_, nullptr, nullptr) != 0) {
    const int e = errno;
    throw Error(fmt::format("ptrace(PTRACE_INTERRUPT, {}) failed: {}", tid_, errno_text(e)));
  }
  for (;;) {
    int status = 0;
    if (!wait(&status, deadline)) {
      throw Error(
          fmt::format("thread {} of process {} did not stop in time (uninterruptible "
                      "sleep?)",
                      tid_, pid_));
    }
    if (!WIFSTOPPED(status)) throw_exit(status, "while stopping it");
    const int event = status >> 16;
    if (event == PTRACE_EVENT_STOP) {
      at_signal_delivery_stop_ = false;  // the interrupt, or a group-stop
      break;
    }
    if (event == 0) {
      // A signal got there first.  Stop here; it is re-delivered on detach.
      siginfo_t info{};
      if (ptrace(PTRACE_GETSIGINFO, tid_, nullptr, &info) == 0) deferred_.push_back(info);
      at_signal_delivery_stop_ = true;
      break;
    }
    ptrace(PTRACE_CONT, tid_, nullptr, nullptr);  // an event we did not ask for
  }
  state_ = State::kStopped;

  if (ptrace(PTRACE_GETREGS, tid_, nullptr, &saved_.gp) != 0) {
    throw Error(fmt::format("cannot read the registers of thread {}: {}", tid_, errno_text(errno)));
  }
  saved_.fp.assign(kMaxXstateSize, std::byte{0});
  iovec iov{saved_.fp.data(), saved_.fp.size()};
  if (ptrace(PTRACE_GETREGSET, tid_, reinterpret_cast<void*>(NT_X86_XSTATE), &iov) == 0) {
    saved_.fp_regset = NT_X86_XSTATE;
  } else {
    iov = {saved_.fp.data(), sizeof(user_fpregs_struct)};
    if (ptrace(PTRACE_GETREGSET, tid_, reinterpret_cast<void*>(NT_PRFPREG), &iov) != 0) {
      throw Error(
          fmt::format("cannot read the FP registers of thread {}: {}", tid_, errno_text(errno)));
    }
    saved_.fp_regset = NT_PRFPREG;
  }
  saved_.fp.resize(iov.iov_len);
}

bool PtraceSession::wait(int* status, Clock::time_point deadline) {
  // waitpid cannot time out, so poll; stops of a thread running short calls
  // come within microseconds, and the sleep grows to 1 ms for long ones.
  auto pause = std::chrono::microseconds(10);
  for (;;) {
    pid_t r = waitpid(tid_, status, __WALL | WNOHANG);
    if (r == tid_) return true;
    if (r < 0) {
      if (errno == EINTR) continue;
      const int e = errno;
      state_ = State::kGone;
      throw Error(fmt::format("waitpid({}) failed: {}", tid_, errno_text(e)));
    }
    const auto now = Clock::now();
    if (now >= deadline) return false;
    std::this_thread::sleep_for(std::min<Clock::duration>(pause, deadline - now));
    pause = std::min(pause * 2, std::chrono::microseconds(1000));
  }
}

void PtraceSession::throw_exit(int status, const char* while_doing) {
  state_ = State::kGone;
  if (WIFEXITED(status)) {
    throw Error(
        fmt::format("process {} exited with status {} {}", pid_, WEXITSTATUS(status), while_doing));
  }
  if (WIFSIGNALED(status)) {
    throw Error(fmt::format("process {} was killed by {} {}", pid_,
                            sigabbrev_np(WTERMSIG(status)) ? sigabbrev_np(WTERMSIG(status)) : "?",
                            while_doing));
  }
  throw Error(fmt::format("thread {} changed state unexpectedly (status {:#x}) {}", tid_, status,
                          while_doing));
}

user_regs_struct PtraceSession::registers() const {
  user_regs_struct regs{};
  if (ptrace(PTRACE_GETREGS, tid_, nullptr, &regs) != 0) {
    throw Error(fmt::format("cannot read the registers of thread {}: {}", tid_, errno_text(errno)));
  }
  return regs;
}

void PtraceSession::set_registers(const user_regs_struct& regs) {
  modified_ = true;
  if (ptrace(PTRACE_SETREGS, tid_, nullptr, &regs) != 0) {
    throw Error(fmt::format("cannot set the registers of thread {}: {}", tid_, errno_text(errno)));
  }
}

void PtraceSession::set_clean_fp_state() {
  user_fpregs_struct fp{};
  fp.cwd = 0x37f;     // all x87 exceptions masked, 64-bit precision, round to nearest
  fp.mxcsr = 0x1f80;  // all SSE exceptions masked, round to nearest
  modified_ = true;
  iovec iov{&fp, sizeof(fp)};
  if (ptrace(PTRACE_SETREGSET, tid_, reinterpret_cast<void*>(NT_PRFPREG), &iov) != 0) {
    throw Error(
        fmt::format("cannot set the FP registers of thread {}: {}", tid_, errno_text(errno)));
  }
}

void PtraceSession::write_memory(RemoteAddr addr, std::span<const std::byte> bytes) {
  memory_writer_.write(addr, bytes);
}

void PtraceSession::resume(Resume how) {
  const auto request = how == Resume::kSingleStep ? PTRACE_SINGLESTEP : PTRACE_CONT;
  if (ptrace(request, tid_, nullptr, nullptr) != 0) {
    const int e = errno;
    if (e == ESRCH) state_ = State::kGone;
    throw Error(fmt::format("cannot resume thread {}: {}", tid_, errno_text(e)));
  }
  state_ = State::kRunning;
}

user_regs_struct PtraceSession::run_until(RemoteAddr expected_rip, Resume how,
                                          Clock::time_point deadline) {
  resume(how);
  for (;;) {
    int status = 0;
    if (!wait(&status, deadline)) {
      stop_after_timeout();
      throw Error(fmt::format("the call in process {} did not return in time", pid_),
                  "the target thread may be blocked; gilstat restored it and detached");
    }
    if (!WIFSTOPPED(status)) throw_exit(status, "during the call");
    state_ = State::kStopped;
    const int event = status >> 16;
    if (event != 0) {
      // A group-stop (SIGSTOP to the process) or our own earlier interrupt:
      // keep our thread going; on detach it rejoins a group-stop in effect.
      resume(how);
      continue;
    }
    at_signal_delivery_stop_ = true;
    siginfo_t info{};
    if (ptrace(PTRACE_GETSIGINFO, tid_, nullptr, &info) != 0) {
      const int e = errno;
      throw Error(fmt::format("PTRACE_GETSIGINFO on thread {} failed: {}", tid_, errno_text(e)));
    }
    const user_regs_struct regs = registers();
    if (info.si_signo == SIGTRAP && regs.rip == expected_rip.value()) return regs;
    if (is_synchronous_fault(info)) {
      throw Error(
          fmt::format("the call in process {} faulted: {}", pid_, describe_fault(info, regs)));
    }
    deferred_.push_back(info);
    resume(how);
  }
}

void PtraceSession::stop_after_timeout() {
  if (ptrace(PTRACE_INTERRUPT, tid_, nullptr, nullptr) != 0) {
    if (errno == ESRCH) state_ = State::kGone;
    return;
  }
  const auto grace = Clock::now() + kStopGrace;
  for (;;) {
    int status = 0;
    if (!wait(&status, grace)) return;  // still running: detach() will report it
    if (!WIFSTOPPED(status)) {
      state_ = State::kGone;
      return;
    }
    state_ = State::kStopped;
    const int event = status >> 16;
    at_signal_delivery_stop_ = event == 0;
    if (event == 0) {
      siginfo_t info{};
      if (ptrace(PTRACE_GETSIGINFO, tid_, nullptr, &info) == 0 && !is_synchronous_fault(info)) {
        deferred_.push_back(info);
      }
    }
    return;
  }
}

void PtraceSession::detach() {
  if (state_ == State::kDetached || state_ == State::kGone) return;
  if (state_ == State::kRunning) {
    stop_after_timeout();
    if (state_ != State::kStopped) {
      throw Error(
          fmt::format("thread {} of process {} could not be stopped to restore it", tid_, pid_),
          "the target may be damaged; it stays attached until gilstat exits");
    }
  }
  std::string failure;
  if (ptrace(PTRACE_SETREGS, tid_, nullptr, &saved_.gp) != 0) {
    failure = fmt::format("cannot restore the registers of thread {}: {}", tid_, errno_text(errno));
  }
  iovec iov{saved_.fp.data(), saved_.fp.size()};
  if (failure.empty() && ptrace(PTRACE_SETREGSET, tid_,
                                reinterpret_cast<void*>(uintptr_t{saved_.fp_regset}), &iov) != 0) {
    failure =
        fmt::format("cannot restore the FP registers of thread {}: {}", tid_, errno_text(errno));
  }

  // The first recorded signal rides on the detach with its original siginfo
  // (the kernel delivers it as the thread resumes); the rest are re-sent.
  size_t first_resent = 0;
  long inject = 0;
  if (at_signal_delivery_stop_ && !deferred_.empty() &&
      ptrace(PTRACE_SETSIGINFO, tid_, nullptr, &deferred_.front()) == 0) {
    inject = deferred_.front().si_signo;
    first_resent = 1;
  }
  if (ptrace(PTRACE_DETACH, tid_, nullptr, reinterpret_cast<void*>(inject)) != 0) {
    const int e = errno;
    state_ = e == ESRCH ? State::kGone : state_;
    if (failure.empty())
      failure = fmt::format("PTRACE_DETACH of {} failed: {}", tid_, errno_text(e));
    first_resent = 0;
  } else {
    state_ = State::kDetached;
  }
  for (size_t i = first_resent; i < deferred_.size(); ++i) redeliver(deferred_[i]);
  deferred_.clear();
  if (!failure.empty()) throw Error(failure);
}

void PtraceSession::redeliver(const siginfo_t& info) const {
  const int sig = info.si_signo;
  if (pid_ <= 0 || tid_ <= 0 || sig <= 0) return;
  if (info.si_code == SI_TKILL) {
    syscall(SYS_tgkill, pid_, tid_, sig);
  } else if (info.si_code < 0) {
    // SI_QUEUE, SI_TIMER, SI_MESGQ, SI_ASYNCIO...: the kernel lets us send these
    // with their siginfo intact.
    siginfo_t copy = info;
    if (syscall(SYS_rt_tgsigqueueinfo, pid_, tid_, sig, &copy) != 0) {
      syscall(SYS_tgkill, pid_, tid_, sig);
    }
  } else {
    // kill() or a kernel-generated signal for the whole process (SIGCHLD,
    // SIGIO...): process-directed again; the siginfo becomes SI_USER.
    kill(pid_, sig);
  }
}

}  // namespace gilstat::attach

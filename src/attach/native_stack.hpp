// Native stacks of a running process's threads, read from outside.
//
// A thread is stopped with PTRACE_SEIZE + PTRACE_INTERRUPT: no signal is sent
// to the program and none of its handlers is touched.  A system call the
// thread was blocked in is restarted by the kernel when it resumes (a sleep
// keeps its deadline, a read its data); the exceptions are the calls the
// kernel itself ends with EINTR on any ptrace stop (epoll_wait, for one: see
// ptrace(2), "BUGS"), which CPython retries (PEP 475).  While stopped, the
// thread is unwound with libunwind-ptrace (StackUnwinder: DWARF CFI, every
// return address checked), its registers and memory are only read, and it is
// detached right after: nothing is written into the target.
//
// Each stack says for how long its thread was kept from running: from the
// PTRACE_INTERRUPT to the return of PTRACE_DETACH (an upper bound; the thread
// stops a little after the interrupt).
//
// Every thread seized is let go on every path: StoppedThreads' destructor
// detaches (also during exception unwinding).  When gilstat itself dies (a
// Ctrl-C with the default action, SIGKILL) the kernel detaches its tracees and
// they run on.  A thread that did not stop before the timeout (uninterruptible
// sleep) cannot be detached until it stops: it is remembered and detached by
// the next StoppedThreads of this gilstat thread, or by the kernel when
// gilstat exits.
//
// ptrace binds a tracee to the tracing *thread*: the calls below must all be
// made from one thread of gilstat.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "attach/process_maps.hpp"
#include "attach/stop_point.hpp"

namespace gilstat::attach {

// The threads of one process, stopped together.  Construction seizes and
// interrupts every requested thread, then waits (until the timeout) for each
// to stop; the destructor detaches every one still held.
class StoppedThreads {
 public:
  // Throws gilstat::Error for a bad pid (exit code 2) or when ptrace is
  // refused (another tracer, permission: exit code 4).  A tid that is not a
  // thread of `pid`, a thread that exits or does not stop in time is not an
  // error: why_not_stopped() says what happened to it.
  StoppedThreads(pid_t pid, std::span<const pid_t> tids, std::chrono::milliseconds stop_timeout);
  ~StoppedThreads();
  StoppedThreads(const StoppedThreads&) = delete;
  StoppedThreads& operator=(const StoppedThreads&) = delete;

  pid_t pid() const { return pid_; }
  bool is_stopped(pid_t tid) const;
  // Why `tid` is not (or no longer) stopped by us: "exited", "did not stop
  // within 200 ms", "not a thread of process N", "resumed"; nullopt while
  // stopped.
  std::optional<std::string> why_not_stopped(pid_t tid) const;
  // Detaches one thread now (no-op unless stopped).  Never throws.
  void resume(pid_t tid);
  void resume_all();
  // How long `tid` has been kept from running (PTRACE_INTERRUPT to now, or
  // to its detach once resumed); zero for a thread that was never stopped.
  std::chrono::nanoseconds stopped_for(pid_t tid) const;

 private:
  enum class State { kPending, kStopped, kDetached, kGone, kNotOurs };
  struct Thread {
    State state = State::kNotOurs;
    std::string why;
    int inject_signal = 0;  // stopped at a signal's delivery: it rides on the detach
    std::chrono::steady_clock::time_point interrupted{};
    std::chrono::steady_clock::time_point detached{};
  };

  void wait_for_stops(std::chrono::steady_clock::time_point deadline);
  static void on_status(Thread& thread, int status);

  pid_t pid_;
  std::chrono::milliseconds stop_timeout_;
  std::map<pid_t, Thread> threads_;
};

// Detaches threads of earlier StoppedThreads (of this gilstat thread) that
// stopped after their timeout.  Called by StoppedThreads itself; exposed so a
// long-running loop can call it between stops.
void release_late_stops();

// The native stack of one thread.
struct NativeStack {
  pid_t tid = 0;
  std::vector<StackFrame> frames;  // innermost first; StackFrame::lookup_pc() symbolises
  bool complete = false;           // reached the outermost frame
  // Why the stack is partial or empty: libunwind's reason, the depth bound,
  // "exited", "did not stop within N ms"; empty when complete.
  std::string why_incomplete;
  std::chrono::nanoseconds stopped{0};  // how long this thread was kept from running
};

struct NativeStacks {
  pid_t pid = 0;
  // The maps the stacks were unwound with (read just before the stop): name
  // the frames with these (Symbolizer::use_maps), not with maps read later.
  ProcessMaps maps;
  std::vector<NativeStack> threads;  // in the order the tids were given
  // The longest time one thread was kept from running (with `together`, the
  // first thread interrupted: about the whole snapshot).
  std::chrono::nanoseconds longest_stop{0};
};

struct NativeStackOptions {
  size_t max_frames = 256;
  // true: every thread stopped at once, all unwound, all resumed (one
  // consistent snapshot); false: one thread at a time, each stopped only for
  // its own unwind.
  bool together = false;
  std::chrono::milliseconds stop_timeout{250};
};

// Unwinds thread `tid` of `stopped` (which must be stopped) with `unwinder`,
// keeping at most `max_frames`.  Does not resume it.
NativeStack unwind_stopped(StoppedThreads& stopped, pid_t tid, StackUnwinder& unwinder,
                           size_t max_frames);

// The native stacks of threads `tids` of process `pid`.  The maps and the
// unwinder are prepared before anything is stopped.  Throws gilstat::Error as
// StoppedThreads does, and when /proc/PID/maps cannot be read.
NativeStacks take_native_stacks(pid_t pid, std::span<const pid_t> tids,
                                const NativeStackOptions& options = {});
// Every thread of the process, stopped together (options.together is forced).
NativeStacks take_all_native_stacks(pid_t pid, NativeStackOptions options = {});

}  // namespace gilstat::attach

#include "attach/native_stack.hpp"

#include <fmt/format.h>
#include <sys/ptrace.h>
#include <sys/wait.h>

#include <algorithm>
#include <cerrno>
#include <thread>
#include <utility>

#include "attach/process_maps.hpp"
#include "attach/ptrace_session.hpp"
#include "attach/remote_memory.hpp"
#include "common/error.hpp"
#include "common/procfs.hpp"

namespace gilstat::attach {

namespace {

using SteadyClock = std::chrono::steady_clock;

// Threads seized by this gilstat thread that had not stopped when their
// StoppedThreads let go: detached as soon as they stop (release_late_stops).
thread_local std::vector<pid_t> t_late_stops;

// Detaches a stopped tracee, handing it the signal it was stopped for (if
// any); false when the thread is gone.
bool detach(pid_t tid, int inject_signal) {
  return ptrace(PTRACE_DETACH, tid, nullptr, reinterpret_cast<void*>(intptr_t{inject_signal})) == 0;
}

// The signal to re-deliver when `status` is a signal-delivery-stop (a signal
// reached the thread before our interrupt did), else 0.
int delivery_signal(int status) { return (status >> 16) == 0 ? WSTOPSIG(status) : 0; }

}  // namespace

void release_late_stops() {
  std::erase_if(t_late_stops, [](pid_t tid) {
    int status = 0;
    const pid_t r = waitpid(tid, &status, __WALL | WNOHANG);
    if (r == 0) return false;  // still not stopped
    if (r == tid && WIFSTOPPED(status)) detach(tid, delivery_signal(status));
    return true;  // detached, exited, or no longer ours
  });
}

StoppedThreads::StoppedThreads(pid_t pid, std::span<const pid_t> tids,
                               std::chrono::milliseconds stop_timeout)
    : pid_(pid), stop_timeout_(stop_timeout) {
  if (pid_ <= 0) throw Error(fmt::format("invalid pid {}", pid), {}, kExitUsage);
  release_late_stops();
  try {
    for (const pid_t tid : tids) {
      if (threads_.contains(tid)) continue;
      Thread& thread = threads_[tid];
      const auto state = tid > 0 ? procfs::task_state(pid_, tid) : std::nullopt;
      if (!state) {
        thread.why = fmt::format("not a thread of process {}", pid_);
        continue;
      }
      if (*state == 'Z' || *state == 'X') {
        thread.state = State::kGone;
        thread.why = "exited";
        continue;
      }
      if (ptrace(PTRACE_SEIZE, tid, nullptr, nullptr) != 0) {
        const int e = errno;
        if (e != ESRCH) throw_seize_failed(pid_, tid, e);
        thread.state = State::kGone;
        thread.why = "exited";
        continue;
      }
      thread.interrupted = SteadyClock::now();
      thread.state = State::kPending;
      if (ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) != 0) {
        // Only a thread that died since the seize refuses the interrupt.
        thread.state = State::kGone;
        thread.why = "exited";
      }
    }
    wait_for_stops(SteadyClock::now() + stop_timeout_);
  } catch (...) {
    // The threads already seized are still interrupted: let them stop and go.
    wait_for_stops(SteadyClock::now() + stop_timeout_);
    resume_all();
    throw;
  }
}

StoppedThreads::~StoppedThreads() { resume_all(); }

void StoppedThreads::wait_for_stops(SteadyClock::time_point deadline) {
  // waitpid cannot time out, so poll: an interrupted thread stops within
  // microseconds unless it is in an uninterruptible sleep.
  auto pause = std::chrono::microseconds(10);
  for (;;) {
    bool pending = false;
    for (auto& [tid, thread] : threads_) {
      if (thread.state != State::kPending) continue;
      int status = 0;
      const pid_t r = waitpid(tid, &status, __WALL | WNOHANG);
      if (r == tid) {
        on_status(thread, status);
        // A tid freed and reused by another process between the check above
        // and the seize: not ours to read.
        if (thread.state == State::kStopped && !procfs::task_state(pid_, tid)) {
          detach(tid, thread.inject_signal);
          thread.state = State::kGone;
          thread.why = "exited";
        }
      } else if (r < 0 && errno != EINTR) {
        thread.state = State::kGone;  // ECHILD: no longer our tracee (it exited)
        thread.why = "exited";
      }
      pending = pending || thread.state == State::kPending;
    }
    if (!pending) return;
    const auto now = SteadyClock::now();
    if (now >= deadline) break;
    std::this_thread::sleep_for(std::min<SteadyClock::duration>(pause, deadline - now));
    pause = std::min(pause * 2, std::chrono::microseconds(1000));
  }
  for (auto& [tid, thread] : threads_) {
    if (thread.state == State::kPending) {
      thread.why =
          fmt::format("did not stop within {} ms (uninterruptible sleep?)", stop_timeout_.count());
    }
  }
}

void StoppedThreads::on_status(Thread& thread, int status) {
  if (!WIFSTOPPED(status)) {
    thread.state = State::kGone;
    thread.why = "exited";
    return;
  }
  // PTRACE_EVENT_STOP: our interrupt, or a group-stop (the process was
  // stopped with SIGSTOP; it stays stopped after the detach).  A plain signal
  // stop: a signal got there first; it is handed back on the detach.
  thread.state = State::kStopped;
  thread.inject_signal = delivery_signal(status);
}

bool StoppedThreads::is_stopped(pid_t tid) const {
  auto it = threads_.find(tid);
  return it != threads_.end() && it->second.state == State::kStopped;
}

std::optional<std::string> StoppedThreads::why_not_stopped(pid_t tid) const {
  auto it = threads_.find(tid);
  if (it == threads_.end()) return "not requested";
  if (it->second.state == State::kStopped) return std::nullopt;
  return it->second.why;
}

void StoppedThreads::resume(pid_t tid) {
  auto it = threads_.find(tid);
  if (it == threads_.end()) return;
  Thread& thread = it->second;
  if (thread.state == State::kStopped) {
    const bool ok = detach(tid, thread.inject_signal);
    thread.detached = SteadyClock::now();
    thread.state = ok ? State::kDetached : State::kGone;
    thread.why = ok ? "resumed" : "exited";
  } else if (thread.state == State::kPending) {
    // Interrupted but not stopped: it can be detached only once it stops.
    t_late_stops.push_back(tid);
    thread.state = State::kDetached;
  }
}

void StoppedThreads::resume_all() {
  for (auto& entry : threads_) resume(entry.first);
}

std::chrono::nanoseconds StoppedThreads::stopped_for(pid_t tid) const {
  auto it = threads_.find(tid);
  if (it == threads_.end()) return {};
  const Thread& thread = it->second;
  if (thread.state == State::kStopped) return SteadyClock::now() - thread.interrupted;
  if (thread.detached != SteadyClock::time_point{}) return thread.detached - thread.interrupted;
  return {};
}

NativeStack unwind_stopped(StoppedThreads& stopped, pid_t tid, StackUnwinder& unwinder,
                           size_t max_frames) {
  NativeStack stack;
  stack.tid = tid;
  if (auto why = stopped.why_not_stopped(tid)) {
    stack.why_incomplete = *why;
    return stack;
  }
  StackWalk walk = unwinder.unwind(tid, max_frames);
  stack.frames = std::move(walk.frames);
  stack.complete = walk.complete;
  stack.why_incomplete = std::move(walk.why_incomplete);
  return stack;
}

NativeStacks take_native_stacks(pid_t pid, std::span<const pid_t> tids,
                                const NativeStackOptions& options) {
  if (pid <= 0) throw Error(fmt::format("invalid pid {}", pid), {}, kExitUsage);
  // Everything that does not need the threads stopped happens before.
  NativeStacks result;
  result.pid = pid;
  result.maps = ProcessMaps::read(pid);
  const LiveRemoteMemory memory(pid);
  StackUnwinder unwinder(result.maps, memory);
  unwinder.prepare();
  if (options.together) {
    StoppedThreads stopped(pid, tids, options.stop_timeout);
    for (const pid_t tid : tids) {
      result.threads.push_back(unwind_stopped(stopped, tid, unwinder, options.max_frames));
    }
    stopped.resume_all();
    for (NativeStack& stack : result.threads) stack.stopped = stopped.stopped_for(stack.tid);
  } else {
    for (const pid_t tid : tids) {
      const pid_t one[] = {tid};
      StoppedThreads stopped(pid, one, options.stop_timeout);
      result.threads.push_back(unwind_stopped(stopped, tid, unwinder, options.max_frames));
      stopped.resume(tid);
      result.threads.back().stopped = stopped.stopped_for(tid);
    }
  }
  for (const NativeStack& stack : result.threads) {
    result.longest_stop = std::max(result.longest_stop, stack.stopped);
  }
  return result;
}

NativeStacks take_all_native_stacks(pid_t pid, NativeStackOptions options) {
  if (pid <= 0) throw Error(fmt::format("invalid pid {}", pid), {}, kExitUsage);
  std::vector<pid_t> tids = procfs::task_ids(pid);
  if (tids.empty()) throw Error(fmt::format("no process with pid {}", pid));
  std::sort(tids.begin(), tids.end());
  options.together = true;
  return take_native_stacks(pid, tids, options);
}

}  // namespace gilstat::attach

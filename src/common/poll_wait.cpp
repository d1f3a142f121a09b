#include "common/poll_wait.hpp"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

namespace gilstat {

namespace {
struct timespec to_timespec(std::chrono::microseconds t) {
  if (t.count() < 0) t = std::chrono::microseconds{0};
  struct timespec ts;
  ts.tv_sec = static_cast<time_t>(t.count() / 1'000'000);
  ts.tv_nsec = static_cast<long>(t.count() % 1'000'000) * 1000;
  return ts;
}
}  // namespace

int poll_for(struct pollfd* fds, size_t n, std::chrono::microseconds timeout) {
  const struct timespec ts = to_timespec(timeout);
  return ppoll(fds, static_cast<nfds_t>(n), &ts, nullptr);
}

void pause_for(std::chrono::microseconds timeout) {
  struct timespec ts = to_timespec(timeout);
  nanosleep(&ts, nullptr);
}

void prefer_draining_thread() {
  // On Linux a tid given to PRIO_PROCESS names that one thread.
  const auto tid = static_cast<id_t>(syscall(SYS_gettid));
  if (getpriority(PRIO_PROCESS, tid) > -10) setpriority(PRIO_PROCESS, tid, -10);
}

}  // namespace gilstat

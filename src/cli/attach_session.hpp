// An attached probe: pre-flight, ptrace-dlopen of the probe, its region
// opened through /proc/PID/fd/N, and a clean stop.  Shared by `top`,
// `record --pid` and `demo --attach`.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>

#include "attach/preflight.hpp"
#include "proto/shm_region.hpp"
#include "report/report.hpp"

namespace gilstat::cli {

class AttachSession {
 public:
  // Throws gilstat::Error (no such process, permission, not CPython, ...)
  // without having touched the target, or after restoring it.
  explicit AttachSession(pid_t pid);
  ~AttachSession();
  AttachSession(const AttachSession&) = delete;
  AttachSession& operator=(const AttachSession&) = delete;

  proto::ShmRegion& region() { return *region_; }
  const attach::PreflightResult& target() const { return target_; }
  const std::string& command() const { return command_; }
  double attach_ms() const { return attach_ms_; }
  proto::ClockKind clock() const { return clock_; }
  // True once the target has exited (its pidfd became readable).
  bool target_exited(int timeout_ms);
  // Asks the probe to unhook and waits (≤ 1 s) until every GOT slot is
  // restored.  Returns false when the probe did not confirm in time (the
  // heartbeat makes it unhook itself anyway).
  bool stop();

 private:
  pid_t pid_;
  attach::PreflightResult target_;
  std::unique_ptr<proto::ShmRegion> region_;
  std::string command_;
  double attach_ms_ = 0;
  proto::ClockKind clock_;
  int pidfd_ = -1;
  bool stopped_ = false;
};

class Capture;

// The end of an attached recording.
struct AttachedWindow {
  report::Report report;
  bool exited = false;  // the target exited; otherwise keep_going ended it
};

// Drains `capture` (keeping the heartbeat alive) until the target exits or
// `keep_going`, called after every drain (about every 5 ms), returns false;
// then unhooks the probe and closes the window.  Shared by `record --pid`
// and `demo --attach`.
AttachedWindow record_attached(AttachSession& session, Capture& capture,
                               const std::function<bool()>& keep_going);

// Stops a polling loop on SIGINT / SIGTERM / SIGHUP.
void install_stop_signals();
bool stop_requested();

}  // namespace gilstat::cli

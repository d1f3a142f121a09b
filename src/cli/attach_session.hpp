// An attached probe: pre-flight, the probe loaded and started (ptrace-dlopen,
// or PEP 768 remote-exec on 3.14+), its region taken with pidfd_getfd
// (proto::ShmRegion::open_in_process), and a clean stop.  Shared by `top`,
// `record --pid` and `demo --attach`.
#pragma once

#include <chrono>
#include <sys/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "attach/preflight.hpp"
#include "attach/remote_exec.hpp"
#include "cli/capture.hpp"
#include "proto/shm_region.hpp"
#include "report/report.hpp"

namespace CLI {
class App;
}

namespace gilstat::cli {

// How the probe gets into the target (--method).
enum class AttachMethod {
  kPtrace,      // stop one thread, call dlopen in it (every supported version)
  kRemoteExec,  // PEP 768: the main thread runs a loader script at a safe point (3.14+)
  kAuto,        // remote-exec where the target allows it, else (or on failure) ptrace
};

// Adds --method to an attaching command; `parse_attach_method` turns its value
// into the enum (a usage error for anything else).
void add_method_option(CLI::App& command, std::string& method);
AttachMethod parse_attach_method(const std::string& text);
const char* method_name(AttachMethod method);

// What --method would do with `target`, without writing anything: the method
// that would be used and, when remote-exec cannot be, why.  Throws the error
// an attach would throw when `requested` is kRemoteExec and it cannot work.
struct MethodPlan {
  AttachMethod method = AttachMethod::kPtrace;
  std::string remote_exec_problem;                 // empty when remote-exec is possible
  std::optional<attach::RemoteExecTarget> remote;  // where its request goes
};
MethodPlan plan_method(const attach::PreflightResult& target, AttachMethod requested);

class AttachSession {
 public:
  // Throws gilstat::Error (no such process, permission, not CPython, ...)
  // without having touched the target, or after restoring it (ptrace) or
  // withdrawing the request (remote-exec).
  explicit AttachSession(pid_t pid, AttachMethod method = AttachMethod::kPtrace);
  ~AttachSession();
  AttachSession(const AttachSession&) = delete;
  AttachSession& operator=(const AttachSession&) = delete;

  proto::ShmRegion& region() { return *region_; }
  const attach::PreflightResult& target() const { return target_; }
  const std::string& command() const { return command_; }
  double attach_ms() const { return attach_ms_; }
  // The method that loaded the probe (kAuto resolved).
  AttachMethod method() const { return method_; }
  proto::ClockKind clock() const { return clock_; }
  // True once the target has exited (its pidfd became readable).
  bool target_exited(std::chrono::microseconds timeout = {});
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
  AttachMethod method_ = AttachMethod::kPtrace;
  proto::ClockKind clock_;
  int pidfd_ = -1;
  bool stopped_ = false;
};

// The end of an attached recording.
struct AttachedWindow {
  report::Report report;
  bool exited = false;      // the target exited; otherwise keep_going ended it
  uint64_t window_end = 0;  // raw clock
};

// Drains `capture` (keeping the heartbeat alive) until the target exits,
// `keep_going`, called after every drain (about every 5 ms), returns false,
// or the region turns out corrupt (session.region().corrupt()); then unhooks
// the probe and closes the window.  Shared by `record --pid`
// and `demo --attach`.
AttachedWindow record_attached(AttachSession& session, Capture& capture,
                               const std::function<bool()>& keep_going);

// Stops a polling loop on SIGINT / SIGTERM / SIGHUP.
void install_stop_signals();
bool stop_requested();

}  // namespace gilstat::cli

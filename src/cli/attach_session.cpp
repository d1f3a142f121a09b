#include "cli/attach_session.hpp"

#include <fmt/core.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <iostream>
#include <thread>

#include "attach/load_library.hpp"
#include "attach/process_maps.hpp"
#include "attach/remote_exec_load.hpp"
#include "cli/capture.hpp"
#include "cli/region_holder.hpp"
#include "common/poll_wait.hpp"
#include "common/clock.hpp"
#include "common/error.hpp"
#include "common/paths.hpp"
#include "common/procfs.hpp"

namespace gilstat::cli {
namespace {

std::atomic<bool> g_stop{false};

void on_stop_signal(int) { g_stop.store(true); }

// gilstat_probe_start's failure codes: -errno, or proto::start_failure(Status).
[[noreturn]] void throw_start_failure(pid_t pid, int64_t rc, const proto::ShmRegion* region) {
  if (rc == -EBUSY) {
    const RegionHolder holder = find_region_holder(pid);
    if (holder.subcommand == "exporter")
      throw Error(fmt::format("process {} is watched by `gilstat exporter` (pid {}), which holds "
                              "its probe",
                              pid, holder.pid),
                  "only one gilstat may read a process: read the exporter's /metrics, or stop "
                  "it (it detaches on SIGTERM)");
    if (holder.pid > 0)
      throw Error(fmt::format("another gilstat is already attached to process {}: `gilstat {}` "
                              "(pid {})",
                              pid, holder.subcommand, holder.pid),
                  "stop it first; only one gilstat may read a process");
    throw Error(fmt::format("another gilstat is already attached to process {}", pid),
                "stop the other `gilstat top`/`record`/`exporter` first; only one may read a "
                "process");
  }
  if (proto::is_status_failure(rc)) {
    const auto status = proto::status_of_failure(rc);
    (void)region;
    if (status == proto::Status::UnsupportedVersion)
      throw Error(fmt::format("process {} runs a CPython version gilstat does not support", pid),
                  "gilstat supports CPython 3.8 to 3.15", kExitNotCPython);
    throw Error(fmt::format("the probe could not hook the GIL in process {} (status {})", pid,
                            static_cast<unsigned>(status)),
                "please report this with `gilstat attach --pid PID --check` output",
                kExitNotCPython);
  }
  throw Error(fmt::format("the probe failed to start in process {}: {}", pid,
                          std::strerror(static_cast<int>(-rc))));
}

}  // namespace

void install_stop_signals() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);
}

bool stop_requested() { return g_stop.load(); }

void add_method_option(CLI::App& command, std::string& method) {
  command.add_option("-m,--method", method,
                     "How to load the probe: ptrace (default), remote-exec (PEP 768, "
                     "CPython 3.14+) or auto");
}

AttachMethod parse_attach_method(const std::string& text) {
  if (text.empty() || text == "ptrace") return AttachMethod::kPtrace;
  if (text == "remote-exec") return AttachMethod::kRemoteExec;
  if (text == "auto") return AttachMethod::kAuto;
  throw Error(fmt::format("unknown --method '{}'", text), "--method is ptrace, remote-exec or auto",
              kExitUsage);
}

const char* method_name(AttachMethod method) {
  switch (method) {
    case AttachMethod::kPtrace:
      return "ptrace";
    case AttachMethod::kRemoteExec:
      return "remote-exec";
    case AttachMethod::kAuto:
      return "auto";
  }
  return "?";
}

MethodPlan plan_method(const attach::PreflightResult& target, AttachMethod requested) {
  MethodPlan plan;
  if (requested == AttachMethod::kPtrace) return plan;
  try {
    attach::LiveRemoteMemory memory(target.pid);
    plan.remote =
        attach::locate_remote_exec(memory, target.pid, target.py_runtime, target.version_hex);
    if (!plan.remote->enabled) {
      throw attach::RemoteExecNotRun(fmt::format("remote debugging is disabled in process {} ({})",
                                                 target.pid, attach::disabled_reason(target.pid)),
                                     "restart it without that setting, or use --method ptrace");
    }
    plan.method = AttachMethod::kRemoteExec;
  } catch (const attach::RemoteExecNotRun& e) {
    if (requested == AttachMethod::kRemoteExec) throw;
    plan.remote_exec_problem = e.what();
    plan.remote.reset();
  }
  return plan;
}

AttachSession::AttachSession(pid_t pid, AttachMethod method) : pid_(pid), clock_(choose_clock()) {
  target_ = attach::preflight(pid, method == AttachMethod::kPtrace);
  command_ = procfs::cmdline(pid);
  MethodPlan plan = plan_method(target_, method);
  const std::string probe = probe_library_path();
  // The probe thread unhooks everything if our heartbeat stops (SIGKILL).
  std::string config = "heartbeat";
  if (clock_ == proto::ClockKind::Tsc) config += ";tsc";
  const auto t0 = std::chrono::steady_clock::now();
  // A probe already in the target (an earlier attach, possibly loaded from a
  // memfd) is reused: dlopen of its soname returns the loaded copy instead of
  // mapping a second one that would hook the hooks.
  attach::LoadOptions load;
  std::string library = probe;
  for (const std::string& object : attach::ProcessMaps::read(pid).object_paths()) {
    if (object.find("libgilstat_probe.so") != std::string::npos ||
        object.find("/memfd:gilstat") != std::string::npos) {
      library = "libgilstat_probe.so";
      load.transfer = attach::LibraryTransfer::kPath;
      break;
    }
  }
  int64_t rc = 0;
  if (plan.method == AttachMethod::kRemoteExec) {
    try {
      rc = attach::remote_exec_load_and_call(target_, *plan.remote, library, "gilstat_probe_start",
                                             config)
               .return_value;
      method_ = AttachMethod::kRemoteExec;
    } catch (const attach::RemoteExecNotRun& e) {
      if (method != AttachMethod::kAuto) throw;
      plan.method = AttachMethod::kPtrace;
      plan.remote_exec_problem = e.what();
    }
  }
  if (plan.method == AttachMethod::kPtrace) {
    // Under auto, say why remote-exec was not used where it exists at all.
    if (method == AttachMethod::kAuto && ((target_.version_hex >> 16) & 0xff) >= 14 &&
        !plan.remote_exec_problem.empty()) {
      std::cerr << fmt::format("gilstat: note: not using remote-exec: {}; attaching with ptrace\n",
                               plan.remote_exec_problem);
    }
    if (method != AttachMethod::kPtrace) attach::check_not_traced(pid);
    rc = attach::load_library_and_call(pid, library, "gilstat_probe_start", config,
                                       std::chrono::seconds(2), load)
             .return_value;
    method_ = AttachMethod::kPtrace;
  }
  attach_ms_ =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (rc < 0) throw_start_failure(pid, rc, nullptr);
  region_ = std::make_unique<proto::ShmRegion>(
      proto::ShmRegion::open_in_process(pid, static_cast<int>(rc)));
  // The probe may run with a different clock than we would pick (it was
  // started by an earlier gilstat): follow the region.
  clock_ = region_->clock();
  region_->beat();
  pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
}

AttachSession::~AttachSession() {
  if (!stopped_) stop();
  if (pidfd_ >= 0) close(pidfd_);
}

bool AttachSession::target_exited(std::chrono::microseconds timeout) {
  if (pidfd_ < 0) {
    if (timeout.count() > 0) pause_for(timeout);
    return kill(pid_, 0) != 0 && errno == ESRCH;
  }
  struct pollfd p {
    pidfd_, POLLIN, 0
  };
  return poll_for(&p, 1, timeout) > 0 && (p.revents & POLLIN);
}

bool AttachSession::stop() {
  stopped_ = true;
  if (!region_ || target_exited()) return true;
  proto::Header& h = region_->header();
  h.stop_request.store(1, std::memory_order_release);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  while (std::chrono::steady_clock::now() < deadline) {
    if (h.status.load() == static_cast<uint32_t>(proto::Status::Stopped)) return true;
    if (target_exited()) return true;
    region_->beat();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

AttachedWindow record_attached(AttachSession& session, Capture& capture,
                               const std::function<bool()>& keep_going) {
  ClockCalibration calibration(session.clock());
  AttachedWindow w;
  prefer_draining_thread();
  capture.start_taking();
  for (;;) {
    try {
      capture.poll();
    } catch (const proto::RegionCorrupt&) {
      break;  // session.region().corrupt() says so; the probe is told to stop below
    }
    session.region().beat();
    if (!keep_going()) break;
    if ((w.exited = session.target_exited(capture.pause()))) break;
  }
  // Unhook first, then close the window: every event the probe recorded
  // happened before this clock read, so no hold runs past the window.
  if (!w.exited) session.stop();
  const uint64_t window_end = read_clock(session.clock());
  calibration.sample();
  w.window_end = window_end;
  w.report = capture.finish(window_end, calibration.ns_per_tick(), session.command());
  return w;
}

}  // namespace gilstat::cli

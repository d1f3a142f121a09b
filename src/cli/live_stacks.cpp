#include "cli/live_stacks.hpp"

#include <fmt/core.h>

#include <iostream>

#include "attach/preflight.hpp"
#include "common/error.hpp"
#include "common/procfs.hpp"
#include "report/modules.hpp"

namespace gilstat::cli {
namespace {

// Whether `pid` is `ancestor` or one of its descendants.  The probe's
// claim_pid is written by the target: a pid it names is only read (and its
// threads only stopped) when it descends from the launched program.
bool descends_from(pid_t pid, pid_t ancestor) {
  for (int depth = 0; pid > 1 && depth < 64; ++depth) {
    if (pid == ancestor) return true;
    const auto status = procfs::read(pid, "status");
    if (!status) return false;
    const auto fields = procfs::parse_status(*status);
    const auto ppid = fields.find("PPid");
    if (ppid == fields.end()) return false;
    pid = static_cast<pid_t>(std::strtol(ppid->second.c_str(), nullptr, 10));
  }
  return false;
}

}  // namespace

void add_stack_options(CLI::App& cmd, StackOptions& opts) {
  cmd.add_option("--profile-rate", opts.profile_rate,
                 "Samples per second of the GIL holder's Python stack for the held-time "
                 "profile (default 200, 0: none)")
      ->check(CLI::Range(0.0, kMaxProfileRate));
  cmd.add_option("--hog-threshold", opts.hog_threshold,
                 "Take the holder's Python and native stack of every GIL hold longer than "
                 "this while another thread waits (ms, e.g. 10, 2.5ms, 0.5s; default 10, "
                 "off: none)");
}

LaunchedStacks::LaunchedStacks(const StackOptions& opts, pid_t child, proto::ClockKind clock)
    : opts_(opts), child_(child), clock_(clock) {}

LaunchedStacks::~LaunchedStacks() = default;

void LaunchedStacks::start(proto::ShmRegion& region) {
  tried_ = true;
  const pid_t claimed = region.header().claim_pid.load();
  const pid_t pid = claimed > 0 ? claimed : child_;
  if (!descends_from(pid, child_)) return;
  try {
    const attach::PreflightResult target = attach::preflight(pid);
    profile_ = std::make_unique<ProfileSampler>(target, clock_, opts_.profile_rate);
    hogs_ = std::make_unique<HogWatcher>(target, clock_, opts_.hog_threshold_ns());
  } catch (const Error& e) {
    std::cerr << fmt::format("gilstat: note: no held-time profile or long-hold stacks: {}\n",
                             e.what());
  }
}

void LaunchedStacks::tick(proto::ShmRegion& region, proto::RecordingWriter* writer) {
  if (!opts_.any() || region.corrupt()) return;
  if (!tried_) {
    const auto status = static_cast<proto::Status>(region.header().status.load());
    if (status != proto::Status::Armed) return;
    start(region);
  }
  if (!profile_) return;
  profile_->flush(region, writer);
  hogs_->tick(region, *profile_, writer);
}

void LaunchedStacks::finish(report::Report& r, uint64_t window_end) const {
  if (!profile_) return;
  r.gil_profile = profile_->gil_profile(r);
  report::attach_hogs(r, profile_->hogs(r, window_end));
}

std::string LaunchedStacks::summary() const {
  if (!hogs_ || !(hogs_->taken() || hogs_->failed() || hogs_->skipped())) return {};
  return hogs_->summary();
}

}  // namespace gilstat::cli

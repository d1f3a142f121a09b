// The stacks taken while a process runs (the held-time profile's samples,
// long holds' stacks) for the commands that share the options: `record`,
// `run`, `top` and `demo`; and their start in a launched program.
#pragma once

#include <sys/types.h>

#include <CLI/CLI.hpp>
#include <cstdint>
#include <memory>
#include <string>

#include "cli/hog_watcher.hpp"
#include "cli/profile_sampler.hpp"
#include "proto/recording.hpp"
#include "proto/shm_region.hpp"
#include "report/report.hpp"

namespace gilstat::cli {

struct StackOptions {
  double profile_rate = kDefaultProfileRate;  // Hz; 0: no profile
  std::string hog_threshold = "10";           // ms; "off": no long-hold stacks
  uint64_t hog_threshold_ns() const { return parse_hog_threshold(hog_threshold); }
  bool any() const { return profile_rate > 0 || hog_threshold_ns() != 0; }
};

// --profile-rate and --hog-threshold on `cmd`.
void add_stack_options(CLI::App& cmd, StackOptions& opts);

// The profile sampler and the hog watcher of a launched program.  They need
// the interpreter's runtime, which exists once the probe has armed in the
// program (it arms when the interpreter creates its GIL): tick() starts them
// then, once.  The program is gilstat's child; the threads are stopped the
// same way as an attached target's (PTRACE_SEIZE + PTRACE_INTERRUPT, no
// signal).
class LaunchedStacks {
 public:
  // `child`: the launched process.  The process the probe runs in may be
  // a descendant of it (a shell script that runs python): that one is read.
  LaunchedStacks(const StackOptions& opts, pid_t child, proto::ClockKind clock);
  ~LaunchedStacks();

  // Between two drains, from the draining thread: starts once the probe
  // armed, then stores the samples and takes the long holds' stacks
  // (`writer` may be null: they are only counted for the report).
  void tick(proto::ShmRegion& region, proto::RecordingWriter* writer);
  // Each drained event (the long holds' ends and the waits they caused).
  void count_event(uint32_t tid, const proto::Event& ev) {
    if (profile_) profile_->count_events(tid, ev);
  }
  // The profile and long holds into the final report.
  void finish(report::Report& r, uint64_t window_end) const;
  // The hog watcher's summary (HogWatcher::summary) when it took stacks or
  // had to skip some; empty otherwise.
  std::string summary() const;

 private:
  void start(proto::ShmRegion& region);

  StackOptions opts_;
  pid_t child_;
  proto::ClockKind clock_;
  bool tried_ = false;
  std::unique_ptr<ProfileSampler> profile_;
  std::unique_ptr<HogWatcher> hogs_;
};

}  // namespace gilstat::cli

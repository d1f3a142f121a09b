// Long holds ("GIL hogs") caught while they last.  Between two drains the
// recording loop asks the probe's per-thread totals (proto::ThreadTotals:
// the state and since when) which thread holds a GIL that another thread is
// waiting for, and since when; a hold older than the threshold gets its
// holder's stack taken while it still holds, and again at each further
// threshold of the same hold (a hold that moves shows each place).
//
// A stack: the holder alone is stopped (PTRACE_SEIZE + PTRACE_INTERRUPT, no
// signal, attach/native_stack.hpp), its Python frames are read from memory
// and its native frames unwound, and it is resumed at once; symbols are
// looked up after the resume.  The two are merged the way `py-spy --native`
// shows them (stacks::merge_stacks).  The hook path is not involved: the probe
// already keeps the totals.
//
// The stop budget: a stopped holder keeps the GIL, so the whole program
// waits while its stack is taken.  Stops draw their length from a budget
// that refills at 1 % of the time and holds at most 20 ms: holders are
// stopped at most 1 % of the time over any long stretch, however many holds
// pass the threshold on a loaded machine, while an occasional long hold
// always gets its stack.  A hold at its first threshold may only spend the
// budget's upper half: the lower half is kept for holds that last longer,
// which are the ones a user looks for (on a loaded machine ordinary turns
// stretch past the threshold and would otherwise spend it all).  And a hold
// still without a stack at its tenth threshold gets one whatever the budget
// says (the budget goes into debt): one stop of a few ms in a hold that has
// kept the others waiting 100 ms is what the user came for.  Thresholds
// passed with the budget spent are counted as skipped.
//
// A hold nobody waits for is not a hog (a program's only thread holds the
// GIL all the time): it is never stopped.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "attach/preflight.hpp"
#include "attach/process_maps.hpp"
#include "attach/remote_memory.hpp"
#include "attach/stop_point.hpp"
#include "common/clock.hpp"
#include "proto/recording.hpp"
#include "proto/shm_region.hpp"
#include "pyruntime/runtime_reader.hpp"
#include "stacks/stack_table.hpp"
#include "symbols/symbolizer.hpp"

namespace gilstat::cli {

class ProfileSampler;

// The default: twice CPython's default switch interval (5 ms).  The
// target's own sys.getswitchinterval() lives in its interpreter state, which
// gilstat does not read.
inline constexpr double kDefaultHogThresholdMs = 10;
inline constexpr double kStopShare = 0.01;          // holders stopped <= 1 % of the time
inline constexpr double kStopBurstNs = 20'000'000;  // ... with at most 20 ms saved up
inline constexpr double kFirstThresholdFloorNs = kStopBurstNs / 2;  // kept for longer holds
inline constexpr uint64_t kAlwaysStackAtThreshold = 10;  // ... and a stack by the 10th, always

// Parses --hog-threshold: milliseconds ("10", "2.5", "10ms", "0.2s"), or
// "off"/"0" (no long-hold stacks).  Returns ns; 0 = off.  Throws Error
// (usage) for anything else.
uint64_t parse_hog_threshold(const std::string& text);

class HogWatcher {
 public:
  // threshold_ns 0: does nothing.
  HogWatcher(const attach::PreflightResult& target, proto::ClockKind clock, uint64_t threshold_ns);
  ~HogWatcher();
  HogWatcher(const HogWatcher&) = delete;
  HogWatcher& operator=(const HogWatcher&) = delete;

  // Looks for long holds and stores their stacks (through `stacks`, which
  // owns the recording's stack table).  Call from one thread only (ptrace
  // binds a tracee to the tracing thread).  Never throws for the target's
  // doing: a stack that cannot be taken is counted in failed().  `writer`
  // may be null (a live view: the stacks are only counted).
  void tick(proto::ShmRegion& region, ProfileSampler& stacks, proto::RecordingWriter* writer);

  uint64_t taken() const { return taken_; }
  uint64_t failed() const { return failed_; }
  // Thresholds passed while the stop budget was spent (no stack taken).
  uint64_t skipped() const { return skipped_; }
  std::chrono::nanoseconds longest_stop() const { return longest_stop_; }
  // "12 long-hold stacks (holders stopped 2.10 ms in all, each at most 0.31 ms)",
  // for stderr.
  std::string summary() const;

  // A hold past the threshold that another thread waits for, as of the
  // last tick (`top` shows it live).
  struct LongHold {
    uint32_t tid = 0, gil = 0;         // gil: index in the region's table
    uint64_t since = 0;                // raw clock: the hold's acquisition
    std::vector<stacks::Frame> stack;  // its latest stack, innermost first; empty: none taken
  };
  std::vector<LongHold> current() const;

 private:
  struct Hold {
    uint64_t since = 0;                // raw clock: the hold's acquisition
    uint64_t taken = 0;                // thresholds passed (each had its stack taken or skipped)
    bool stack_due = true;             // no stack kept, no stop made whatever the budget
    std::vector<stacks::Frame> stack;  // the latest stack taken
  };
  // The holder's merged stack, or nullopt (it let go first, or could not be
  // stopped or read).
  std::optional<std::vector<stacks::Frame>> take(proto::ShmRegion& region, uint32_t tid,
                                                 uint32_t gil, uint64_t since);
  bool still_holds(proto::ShmRegion& region, uint32_t tid, uint32_t gil, uint64_t since);

  attach::PreflightResult target_;
  proto::ClockKind clock_;
  uint64_t threshold_ns_;
  uint64_t last_tick_ns_ = 0;  // monotonic: ticks closer than a quarter threshold, 2 ms at most, do nothing
  ClockCalibration calibration_;
  std::string interpreter_;  // basename of the interpreter's object
  std::unique_ptr<attach::LiveRemoteMemory> memory_;
  std::unique_ptr<pyruntime::HolderSampler> python_;
  std::unique_ptr<attach::ProcessMaps> maps_;
  std::unique_ptr<attach::StackUnwinder> unwinder_;
  symbols::Symbolizer symbolizer_;
  std::map<std::pair<uint32_t, uint32_t>, Hold> holds_;  // by (tid, GIL index)
  uint64_t taken_ = 0, failed_ = 0, skipped_ = 0;
  std::chrono::nanoseconds longest_stop_{0};
  std::chrono::nanoseconds total_stop_{0};  // every stop, taken or not
  std::chrono::nanoseconds last_stop_{0};  // the latest take()'s stop
  double budget_ns_ = kStopBurstNs;        // the stop budget (a token bucket)
  uint64_t budget_at_ns_ = 0;              // monotonic: when it was last refilled
  bool disabled_ = false;
};

}  // namespace gilstat::cli

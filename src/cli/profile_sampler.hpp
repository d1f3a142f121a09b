// The held-time profile's samples, taken while recording a process
// (attached or launched): a thread of gilstat reads the GIL holder's Python
// stack from the target's memory at a steady rate (pyruntime::HolderSampler;
// the target is not stopped, nothing runs in it), and the recording loop
// stores each stack (frames and stacks once, then samples by id) for
// `report` to weight by the exact held times.  The samples (long holds'
// too) are also counted here, so that a live report (`run`, `top`) gets the
// same profile and long holds as `report` reads from the recording.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "attach/preflight.hpp"
#include "proto/recording.hpp"
#include "proto/shm_region.hpp"
#include "report/gil_profile.hpp"
#include "report/hogs.hpp"
#include "stacks/stack_table.hpp"

namespace gilstat::cli {

inline constexpr double kDefaultProfileRate = 200;  // Hz
inline constexpr double kMaxProfileRate = 1000;

class ProfileSampler {
 public:
  // rate_hz 0: no sampling.  A target whose stacks cannot be read (no
  // layout for its version) gets one note on stderr and no samples.
  ProfileSampler(const attach::PreflightResult& target, proto::ClockKind clock, double rate_hz);
  ~ProfileSampler();  // stops the sampling thread
  ProfileSampler(const ProfileSampler&) = delete;
  ProfileSampler& operator=(const ProfileSampler&) = delete;

  // Stores the samples taken since the last call: new frames and stacks,
  // then the samples, each tagged with the index of its GIL in the
  // region's table (a GIL the probe does not know is left out).  `writer`
  // may be null (nothing saved; the samples are only counted).
  void flush(proto::ShmRegion& region, proto::RecordingWriter* writer);
  uint64_t samples_written() const { return written_; }

  // Stores one stack and its sample (`sample.stack` is set here): the
  // frames and stacks of a recording share one table, so every stack taken
  // while recording (long holds too) goes through this.  False when the
  // table is full.  `writer` may be null.
  bool write_sample(proto::RecordingWriter* writer, const std::vector<stacks::Frame>& frames,
                    stacks::Sample sample);

  // The drained events, for the long holds' ends and the waits they caused
  // (a live report only: a recording has them in its events).
  void count_events(uint32_t tid, const proto::Event& ev) { hogs_.add_events(tid, &ev, 1); }
  // The profile and long holds of the samples so far, as `report` computes
  // them from a recording (window_end: raw clock).
  report::GilProfile gil_profile(const report::Report& r) const {
    return profile_.finish(r, table_);
  }
  report::HogsReport hogs(const report::Report& r, uint64_t window_end) const {
    return hogs_.finish(r, table_, window_end);
  }
  // The profile of the samples since the last call, weighted by `interval`
  // (a report whose threads' held times are the interval's: `top`).
  report::GilProfile take_interval_profile(const report::Report& interval);

 private:
  struct Taken {
    uint64_t gil_address;
    uint32_t tid;
    uint64_t ts;                        // recording clock
    std::vector<stacks::Frame> frames;  // innermost first
  };
  void run(pid_t pid, attach::RemoteAddr py_runtime, uint32_t version_hex, double rate_hz);

  proto::ClockKind clock_;
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::vector<Taken> pending_;  // bounded: kMaxPending
  std::thread thread_;
  stacks::StackTable table_;
  uint32_t frames_written_ = 0, stacks_written_ = 0;
  uint64_t written_ = 0;
  report::ProfileCounter profile_, interval_;
  report::HogCounter hogs_;
  static constexpr size_t kMaxPending = 1u << 16;
};

}  // namespace gilstat::cli

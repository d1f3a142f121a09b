// The held-time profile's samples, taken while recording an attached
// process: a thread of gilstat reads the GIL holder's Python stack from the
// target's memory at a steady rate (pyruntime::HolderSampler; the target is
// not stopped, nothing runs in it), and the recording loop stores each
// stack (frames and stacks once, then samples by id) for `report` to weight
// by the exact held times.
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
  // region's table (a GIL the probe does not know is left out).
  void flush(proto::ShmRegion& region, proto::RecordingWriter& writer);
  uint64_t samples_written() const { return written_; }

  // Stores one stack and its sample (`sample.stack` is set here): the
  // frames and stacks of a recording share one table, so every stack taken
  // while recording (long holds too) goes through this.  False when the
  // table is full.
  bool write_sample(proto::RecordingWriter& writer, const std::vector<stacks::Frame>& frames,
                    stacks::Sample sample);

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
  static constexpr size_t kMaxPending = 1u << 16;
};

}  // namespace gilstat::cli

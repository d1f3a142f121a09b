#include "cli/profile_sampler.hpp"

#include <fmt/core.h>

#include <chrono>
#include <iostream>

#include "attach/remote_memory.hpp"
#include "common/clock.hpp"
#include "common/error.hpp"
#include "pyruntime/runtime_reader.hpp"

namespace gilstat::cli {

ProfileSampler::ProfileSampler(const attach::PreflightResult& target, proto::ClockKind clock,
                               double rate_hz)
    : clock_(clock) {
  if (rate_hz <= 0) return;
  thread_ = std::thread(&ProfileSampler::run, this, target.pid, target.py_runtime,
                        target.version_hex, rate_hz);
}

ProfileSampler::~ProfileSampler() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

void ProfileSampler::run(pid_t pid, attach::RemoteAddr py_runtime, uint32_t version_hex,
                         double rate_hz) {
  try {
    attach::LiveRemoteMemory memory(pid);
    pyruntime::HolderSampler sampler(memory, pid, py_runtime, version_hex);
    const auto period = std::chrono::nanoseconds(static_cast<int64_t>(1e9 / rate_hz));
    auto next = std::chrono::steady_clock::now();
    while (!stop_.load()) {
      for (pyruntime::HolderSample& s : sampler.sample(monotonic_ns())) {
        Taken t{s.gil, static_cast<uint32_t>(s.tid), read_clock(clock_), {}};
        for (const pyruntime::PyFrame& f : s.stack)
          t.frames.push_back(stacks::Frame{stacks::FrameKind::Python,
                                           f.function,
                                           f.file,
                                           static_cast<uint32_t>(std::max(f.line, 0)),
                                           {},
                                           0});
        std::lock_guard lock(mutex_);
        if (pending_.size() < kMaxPending) pending_.push_back(std::move(t));
      }
      // A steady rate: a late sample does not make the next ones early.
      next += period;
      const auto now = std::chrono::steady_clock::now();
      if (next < now) next = now;
      std::this_thread::sleep_until(next);
    }
  } catch (const Error& e) {
    std::cerr << fmt::format("gilstat: note: no held-time profile: {}\n", e.what());
  }
}

void ProfileSampler::flush(proto::ShmRegion& region, proto::RecordingWriter* writer) {
  std::vector<Taken> taken;
  {
    std::lock_guard lock(mutex_);
    taken.swap(pending_);
  }
  if (taken.empty() || region.corrupt()) return;
  uint32_t gil_count = 0;
  try {
    gil_count = region.gil_count();  // bounded
  } catch (const proto::RegionCorrupt&) {
    return;  // the recording loop ends the session at its next drain
  }
  for (const Taken& t : taken) {
    uint32_t gil = gil_count;
    for (uint32_t i = 0; i < gil_count; ++i)
      if (region.header().gils[i].valid.load() && region.header().gils[i].address == t.gil_address)
        gil = i;
    if (gil == gil_count) continue;
    if (write_sample(writer, t.frames, {t.tid, gil, t.ts, 0, stacks::SampleReason::Profile, 0}))
      ++written_;
  }
}

bool ProfileSampler::write_sample(proto::RecordingWriter* writer,
                                  const std::vector<stacks::Frame>& frames, stacks::Sample sample) {
  std::vector<uint32_t> ids;
  for (const stacks::Frame& f : frames)
    if (auto id = table_.frame_id(f)) ids.push_back(*id);
  auto stack = table_.stack_id(ids);
  if (!stack) return false;  // the table is full
  sample.stack = *stack;
  profile_.add(sample);
  interval_.add(sample);
  hogs_.add_sample(sample);
  if (!writer) return true;
  for (; frames_written_ < table_.frame_count(); ++frames_written_)
    writer->frame(frames_written_, *table_.frame(frames_written_));
  for (; stacks_written_ < table_.stack_count(); ++stacks_written_)
    writer->stack(stacks_written_, *table_.stack(stacks_written_));
  writer->sample(sample);
  return true;
}

report::GilProfile ProfileSampler::take_interval_profile(const report::Report& interval) {
  report::GilProfile p = interval_.finish(interval, table_);
  interval_ = {};
  return p;
}

}  // namespace gilstat::cli

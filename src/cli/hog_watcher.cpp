#include "cli/hog_watcher.hpp"

#include <fmt/core.h>

#include <cmath>
#include <cstdlib>
#include <iostream>
#include <set>

#include "attach/native_stack.hpp"
#include "cli/profile_sampler.hpp"
#include "common/error.hpp"
#include "stacks/merge.hpp"

namespace gilstat::cli {
namespace {

constexpr auto kStopTimeout = std::chrono::milliseconds(50);
constexpr size_t kMaxNativeFrames = 128;

std::string basename_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

uint64_t parse_hog_threshold(const std::string& text) {
  if (text == "off" || text == "0") return 0;
  const char* begin = text.c_str();
  char* end = nullptr;
  const double value = std::strtod(begin, &end);
  const std::string unit(end ? end : "");
  double ms = value;
  if (unit == "s")
    ms = value * 1000;
  else if (unit != "" && unit != "ms")
    ms = NAN;
  if (end == begin || !std::isfinite(ms) || ms < 0 || ms > 3'600'000)
    throw Error(fmt::format("bad --hog-threshold '{}'", text),
                "give milliseconds (10, 2.5ms, 0.5s), or off", kExitUsage);
  return static_cast<uint64_t>(ms * 1e6);
}

HogWatcher::HogWatcher(const attach::PreflightResult& target, proto::ClockKind clock,
                       uint64_t threshold_ns)
    : target_(target),
      clock_(clock),
      threshold_ns_(threshold_ns),
      calibration_(clock),
      interpreter_(basename_of(target.object_path)) {
  if (threshold_ns_ == 0) return;
  try {
    memory_ = std::make_unique<attach::LiveRemoteMemory>(target.pid);
    python_ = std::make_unique<pyruntime::HolderSampler>(*memory_, target.pid, target.py_runtime,
                                                         target.version_hex);
  } catch (const Error& e) {
    std::cerr << fmt::format("gilstat: note: no long-hold stacks: {}\n", e.what());
    disabled_ = true;
  }
}

HogWatcher::~HogWatcher() = default;

std::string HogWatcher::summary() const {
  std::string s = fmt::format("{} long-hold stack{}", taken_, taken_ == 1 ? "" : "s");
  if (taken_)
    s += fmt::format(" (holders stopped {:.2f} ms in all, each at most {:.2f} ms)",
                     total_stop_.count() / 1e6, longest_stop_.count() / 1e6);
  if (failed_) s += fmt::format(", {} not taken (the holder let go or could not be read)", failed_);
  if (skipped_)
    s += fmt::format(", {} skipped to keep the holders stopped under 1 % of the time", skipped_);
  return s;
}

std::vector<HogWatcher::LongHold> HogWatcher::current() const {
  std::vector<LongHold> out;
  for (const auto& [key, hold] : holds_)
    if (hold.taken > 0) out.push_back({key.first, key.second, hold.since, hold.stack});
  return out;
}

bool HogWatcher::still_holds(proto::ShmRegion& region, uint32_t tid, uint32_t gil, uint64_t since) {
  bool holds = false;
  try {
    region.live_totals([&](const proto::TotalsSnapshot& t) {
      if (t.tid == tid && t.gil == gil && t.state == proto::TotalsState::Holding &&
          t.since == since)
        holds = true;
    });
  } catch (const proto::RegionCorrupt&) {
    return false;
  }
  return holds;
}

void HogWatcher::tick(proto::ShmRegion& region, ProfileSampler& stacks,
                      proto::RecordingWriter* writer) {
  if (threshold_ns_ == 0 || disabled_ || region.corrupt()) return;
  // The capture loops come by up to every 0.1 ms when rings fill fast; holds
  // are judged against the threshold, so a few looks per threshold do.
  const uint64_t mono = monotonic_ns();
  if (mono - last_tick_ns_ < std::min<uint64_t>(threshold_ns_ / 4, 2'000'000)) return;
  last_tick_ns_ = mono;
  calibration_.sample();
  std::vector<proto::TotalsSnapshot> now_totals;
  try {
    region.live_totals([&](const proto::TotalsSnapshot& t) {
      if (!(t.flags & proto::kRingOwnThread)) now_totals.push_back(t);
    });
  } catch (const proto::RegionCorrupt&) {
    return;  // the recording loop ends the session at its next drain
  }
  std::set<uint32_t> waited;  // GILs somebody waits for
  for (const auto& t : now_totals)
    if (t.state == proto::TotalsState::Waiting) waited.insert(t.gil);
  const uint64_t now = read_clock(clock_);
  const double ns_per_tick = calibration_.ns_per_tick();
  std::map<std::pair<uint32_t, uint32_t>, Hold> holding;
  for (const auto& t : now_totals) {
    if (t.state != proto::TotalsState::Holding || !waited.count(t.gil) || t.since > now) continue;
    const auto key = std::make_pair(t.tid, t.gil);
    Hold hold;
    hold.since = t.since;
    if (auto it = holds_.find(key); it != holds_.end() && it->second.since == t.since)
      hold = it->second;
    const auto age_ns = static_cast<uint64_t>(static_cast<double>(now - t.since) * ns_per_tick);
    const uint64_t passed = age_ns / threshold_ns_;
    if (passed > hold.taken) {
      // Thresholds passed between two ticks are not made up for.
      hold.taken = passed;
      const uint64_t mono = monotonic_ns();
      if (budget_at_ns_)
        budget_ns_ = std::min(kStopBurstNs,
                              budget_ns_ + kStopShare * static_cast<double>(mono - budget_at_ns_));
      budget_at_ns_ = mono;
      const bool owed = hold.stack_due && passed >= kAlwaysStackAtThreshold;
      if (owed) hold.stack_due = false;  // once per hold, kept or not
      if (!owed && budget_ns_ <= (passed == 1 ? kFirstThresholdFloorNs : 0)) {
        ++skipped_;
        holding[key] = hold;
        continue;
      }
      auto frames = take(region, t.tid, t.gil, t.since);
      budget_ns_ -= static_cast<double>(last_stop_.count());
      if (frames) {
        if (stacks.write_sample(
                writer, *frames,
                {t.tid, t.gil, read_clock(clock_), 0, stacks::SampleReason::LongHold, t.since})) {
          ++taken_;
          hold.stack_due = false;
        }
        hold.stack = std::move(*frames);
      } else {
        ++failed_;
      }
    }
    holding[key] = hold;
  }
  holds_.swap(holding);  // holds that ended are forgotten
}

std::optional<std::vector<stacks::Frame>> HogWatcher::take(proto::ShmRegion& region, uint32_t tid,
                                                           uint32_t gil, uint64_t since) {
  last_stop_ = std::chrono::nanoseconds{0};
  uint64_t gil_address = 0;
  try {
    if (gil >= region.gil_count()) return std::nullopt;
    gil_address = region.header().gils[gil].address;
  } catch (const proto::RegionCorrupt&) {
    return std::nullopt;
  }
  // Everything that needs no stop happens before: the maps (again only when
  // a library was loaded or unloaded since) and the unwind tables.
  try {
    auto maps = std::make_unique<attach::ProcessMaps>(attach::ProcessMaps::read(target_.pid));
    if (!maps_ || maps->entries().size() != maps_->entries().size()) {
      unwinder_.reset();
      maps_ = std::move(maps);
      unwinder_ = std::make_unique<attach::StackUnwinder>(*maps_, *memory_);
      unwinder_->prepare();
      symbolizer_.use_maps(target_.pid, *maps_);
    }
  } catch (const Error&) {
    return std::nullopt;  // the target is gone
  }
  python_->sample(monotonic_ns());  // its occasional re-read of the GILs, not while stopped
  std::vector<pyruntime::PyFrame> python;
  attach::NativeStack native;
  std::chrono::nanoseconds stopped_for{0};
  try {
    const pid_t one[] = {static_cast<pid_t>(tid)};
    attach::StoppedThreads stopped(target_.pid, one, kStopTimeout);
    if (stopped.is_stopped(static_cast<pid_t>(tid))) {
      for (pyruntime::HolderSample& s : python_->sample(monotonic_ns()))
        if (s.gil == gil_address && s.tid == static_cast<pid_t>(tid)) python = std::move(s.stack);
      native =
          attach::unwind_stopped(stopped, static_cast<pid_t>(tid), *unwinder_, kMaxNativeFrames);
    }
    stopped.resume(static_cast<pid_t>(tid));
    stopped_for = stopped.stopped_for(static_cast<pid_t>(tid));
  } catch (const Error&) {
    return std::nullopt;  // ptrace refused (another tracer came along)
  }
  longest_stop_ = std::max(longest_stop_, stopped_for);
  total_stop_ += stopped_for;
  last_stop_ = stopped_for;
  // The same hold before and after the stop: the stack is that hold's.
  if ((python.empty() && native.frames.empty()) || !still_holds(region, tid, gil, since))
    return std::nullopt;
  std::vector<stacks::Frame> native_frames;
  for (const attach::StackFrame& f : native.frames) {
    symbols::Location loc;
    try {
      loc = symbolizer_.locate(target_.pid, f);
    } catch (const Error&) {
      break;
    }
    stacks::Frame frame;
    frame.kind = stacks::FrameKind::Native;
    frame.function = loc.function;
    frame.object = loc.object_basename();
    // Named frames are one frame wherever in the function the thread was;
    // the address is kept where no symbol covers it.
    if (loc.function.empty())
      frame.offset = loc.object_vaddr.value_or(loc.file_offset.value_or(loc.address.value()));
    native_frames.push_back(std::move(frame));
  }
  std::vector<stacks::Frame> py_frames;
  for (const pyruntime::PyFrame& f : python)
    py_frames.push_back(stacks::Frame{stacks::FrameKind::Python,
                                      f.function,
                                      f.file,
                                      static_cast<uint32_t>(std::max(f.line, 0)),
                                      {},
                                      0});
  return stacks::merge_stacks(native_frames, py_frames, interpreter_);
}

}  // namespace gilstat::cli

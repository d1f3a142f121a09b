#include "proto/capture.hpp"

#include <algorithm>
#include <array>
#include <cstring>

#include "common/clock.hpp"
#include "common/procfs.hpp"
#include "gilstat/version.hpp"
#include "report/host_ids.hpp"

namespace gilstat::proto {

Capture::Capture(ShmRegion& region, RecordingWriter* writer)
    : region_(region), writer_(writer), pacer_(region.layout().layout.ring_capacity) {}

void Capture::start_taking() {
  if (!taker_) taker_ = std::make_unique<RingTaker>(region_);
}

report::ExactTotals close_totals(const TotalsSnapshot& s, uint64_t end) {
  report::ExactTotals t;
  t.tid = s.tid;
  t.ring_flags = s.flags;
  t.gil = s.gil;
  t.held = s.held;
  t.wait = s.wait;
  t.released = s.released;
  t.acquisitions = s.acquisitions;
  t.forced_handoffs = s.forced_handoffs;
  // A hold or a wait still running is closed at `end`, as the event
  // timelines close it; a released thread's lifetime ends at its last change.
  uint64_t last = s.since;
  if (s.state == TotalsState::Holding || s.state == TotalsState::Waiting) {
    last = std::max(end, s.since);
    uint64_t& open = s.state == TotalsState::Holding ? t.held : t.wait;
    if (__builtin_add_overflow(open, last - s.since, &open)) open = UINT64_MAX;
  }
  if (s.state != TotalsState::None && last >= s.first_ts) t.lifetime = last - s.first_ts;
  return t;
}

void Capture::set_host_pid(pid_t host_pid) {
  HostIds ids(host_pid);
  if (ids.namespaced()) host_ids_.emplace(std::move(ids));
}

uint64_t Capture::poll() {
  const uint64_t n = region_.drain(
      [&](uint32_t tid, uint32_t flags, const Event& ev) {
        if (host_ids_ && tid != last_tid_) {
          last_tid_ = tid;
          if (seen_tids_.size() < HostIds::kMaxEntries) seen_tids_.insert(tid);
        }
        aggregator_.add_event(tid, flags, ev);
        if (writer_) writer_->event(tid, flags, ev);
        if (tap_) tap_(tid, ev);
      },
      [&](uint32_t tid, uint64_t dropped) {
        // Per thread for as many threads as the aggregator keeps (a target
        // rewriting its rings' tids must not grow this without bound); the
        // total counts every drop.
        if (drop_tids_.size() < report::Aggregator::kDefaultMaxThreads || drop_tids_.count(tid)) {
          drop_tids_.insert(tid);
          aggregator_.add_thread_drops(tid, dropped);
        }
        drops_ += dropped;
        if (writer_) writer_->drops(tid, dropped);
      },
      [&](const TotalsSnapshot& s) {
        // An ended thread: its totals are final.
        const report::ExactTotals t = close_totals(s, s.since);
        aggregator_.add_thread_totals(t);
        if (writer_) writer_->totals(t);
        if (fold_exited_ && (ended_.empty() || ended_.back() != s.tid)) ended_.push_back(s.tid);
      });
  events_ += n;
  ++polls_;
  last_poll_events_ = n;
  if (!taker_) pacer_.took(region_.max_fill(), monotonic_ns());
  sync_names();
  sync_host_ids();
  fold_ended();  // after the names: a thread's name may arrive in the same poll as its end
  if (writer_) {
    if (!meta_written_ || polls_ % 10 == 0) sync_recording_meta();
    if (writer_->flush_due()) {
      write_clock_sample();
      writer_->flush();
    }
  }
  return n;
}

std::chrono::microseconds Capture::pause() const {
  if (!taker_) return pacer_.pause();
  const bool busy = last_poll_events_ > region_.layout().layout.ring_capacity / 4;
  return std::chrono::microseconds{busy ? 1000 : 5000};
}

void Capture::write_clock_sample() {
  writer_->clock({read_clock(region_.clock()), monotonic_ns(), drops_no_ring()});
}

uint64_t Capture::drops_no_ring() const {
  if (!region_.corrupt()) last_drops_no_ring_ = region_.header().drops_no_ring.load();
  return last_drops_no_ring_;
}

// A recording cut off at any point still says what it measured: the
// metadata as soon as the probe has armed a GIL, each GIL when it appears.
void Capture::sync_recording_meta() {
  RecMeta meta;
  std::vector<RecGil> gils;
  describe(UINT64_MAX, {}, &meta, &gils);
  if (gils.empty()) return;  // not armed yet
  if (!meta_written_) {
    // The target's own command line until finish() is told what was run
    // (by the host's pid: the probe reports the one of its own namespace).
    meta.command = procfs::cmdline(host_ids_ ? host_ids_->host_pid() : meta.pid);
    writer_->meta(meta);
    write_clock_sample();  // the first calibration pair
    meta_written_ = true;
  }
  for (RecGil& g : gils) {
    auto it = written_gils_.find(g.index);
    if (it != written_gils_.end()) {
      // switch_number and the counters move all the time; they are written
      // at the end.
      g.final_switch_number = it->second.final_switch_number;
      g.acquisitions = it->second.acquisitions;
      g.switches = it->second.switches;
      g.drop_requests = it->second.drop_requests;
      if (it->second == g) continue;
    }
    writer_->gil(g);
    written_gils_[g.index] = g;
  }
}

// Looked up while the threads are (most likely) alive: a thread's first
// events and its name arrive within one poll of its start.
void Capture::sync_host_ids() {
  if (!host_ids_) return;
  for (const uint32_t tid : seen_tids_)
    if (!host_ids_->known().contains(tid)) host_ids_->host_tid(tid);
  seen_tids_.clear();
  if (!writer_ || host_ids_->known().size() == written_host_ids_.size()) return;
  // A lookup rescans every thread of the process: save every new mapping.
  std::vector<proto::TidPair> pairs;
  for (const auto& [tid, host] : host_ids_->known())
    if (written_host_ids_.emplace(tid, host).second) pairs.emplace_back(tid, host);
  writer_->host_ids(host_ids_->host_pid(), pairs);
}

void Capture::fold_ended() {
  if (ended_.empty()) return;
  // A thread's name is logged before it runs, but an entry before it that
  // another thread is still writing holds the log's reader back: the ended
  // threads wait for the names to be read (a few polls at most; a log that
  // stays stuck does not hold more than kMaxDeferredFolds).
  if (region_.names_pending() && ended_.size() < kMaxDeferredFolds) return;
  const uint64_t now = read_clock(region_.clock());
  RecMeta meta;
  std::vector<RecGil> gils;
  describe(now, {}, &meta, &gils);
  std::array<uint64_t, kMaxGils> arm_ts{};
  for (const RecGil& g : gils)
    if (g.index < kMaxGils) arm_ts[g.index] = g.arm_ts;
  for (const uint32_t tid : ended_) {
    aggregator_.fold_exited(tid, arm_ts, now);
    names_.erase(tid);
    drop_tids_.erase(tid);
    std::erase_if(at_arm_, [tid](const auto& e) { return e.first.second == tid; });
    if (host_ids_) {
      // Mapped when first seen: a recording has it already.
      host_ids_->forget(tid);
      written_host_ids_.erase(tid);
    }
  }
  ended_.clear();
}

void Capture::sync_names() {
  for (auto& [tid, name] : region_.new_names()) {
    if (host_ids_ && seen_tids_.size() < HostIds::kMaxEntries) seen_tids_.insert(tid);
    auto it = names_.find(tid);
    if (it != names_.end() && it->second == name) continue;
    if (it == names_.end() && names_.size() >= report::Aggregator::kDefaultMaxThreads) continue;
    names_[tid] = name;
    aggregator_.set_thread_name(tid, name);
    if (writer_) writer_->name(tid, name);
  }
}

void Capture::add_outside_names(const std::vector<std::pair<pid_t, std::string>>& names) {
  for (const auto& [tid, name] : names) {
    const auto key = static_cast<uint32_t>(tid);
    if (names_.count(key) || names_.size() >= report::Aggregator::kDefaultMaxThreads) continue;
    names_[key] = name;
    aggregator_.set_thread_name(key, name);
    if (writer_) writer_->name(key, name);
  }
}

void Capture::set_state_at_arm(uint32_t gil, uint32_t tid, uint8_t role) {
  if (at_arm_.size() < kMaxArmStates) at_arm_[{gil, tid}] = role;
}

void Capture::describe(uint64_t window_end, const std::string& command, RecMeta* meta,
                       std::vector<RecGil>* gils) const {
  if (!region_.corrupt()) {
    try {
      describe_live(window_end, command, meta, gils);
      last_meta_ = *meta;
      last_gils_ = *gils;
      return;
    } catch (const RegionCorrupt&) {
      // region_.corrupt() says so from now on; the next poll() throws it.
      gils->clear();
    }
  }
  *meta = last_meta_;
  meta->command = command;
  meta->window_start = std::min(meta->window_start, window_end);
  *gils = last_gils_;
}

void Capture::describe_live(uint64_t window_end, const std::string& command, RecMeta* meta,
                            std::vector<RecGil>* gils) const {
  const Header& h = region_.header();
  meta->pid = h.claim_pid.load();
  meta->clock = region_.clock();
  meta->py_version_hex = h.py_version_hex;
  meta->free_threaded = h.free_threaded;
  meta->libpython_shared = h.libpython_shared;
  meta->gilstat_version = kVersion;
  meta->py_version = std::string(h.py_version, strnlen(h.py_version, sizeof(h.py_version)));
  meta->command = command;
  meta->window_start = window_end;
  const uint32_t count = region_.gil_count();  // bounded, or RegionCorrupt
  for (uint32_t i = 0; i < count; ++i) {
    const GilSlot& s = h.gils[i];
    if (!s.valid.load()) continue;
    RecGil g;
    g.index = i;
    g.address = s.address;
    g.initial_switch_number = s.initial_switch_number;
    g.final_switch_number = s.last_switch_number.load();
    g.initial_holder = s.initial_holder;
    g.counters = true;
    g.acquisitions = s.acquisitions.load(std::memory_order_relaxed);
    g.switches = s.switches.load(std::memory_order_relaxed);
    g.drop_requests = s.drop_requests.load(std::memory_order_relaxed);
    for (int64_t id : s.interp_ids)
      if (id >= 0) g.interp_ids.push_back(id);
    // A time of arming after the window's end cannot be right: ignored.
    if (s.arm_ts <= window_end) {
      meta->window_start = std::min(meta->window_start, s.arm_ts);
      g.arm_ts = s.arm_ts;
    }
    for (const auto& [key, role] : at_arm_)
      if (key.first == i) g.at_arm.emplace_back(key.second, role);
    gils->push_back(g);
  }
}

std::vector<report::ExactTotals> Capture::live_totals(uint64_t window_end, bool* exact) const {
  std::vector<report::ExactTotals> live;
  *exact = false;
  if (region_.corrupt()) return live;
  try {
    *exact = region_.live_totals([&](const TotalsSnapshot& s) {
      if (live.size() < report::Aggregator::kDefaultMaxThreads)
        live.push_back(close_totals(s, window_end));
    }) && !region_.totals_incomplete();
  } catch (const RegionCorrupt&) {
    // region_.corrupt() says so from now on; the next poll() throws it.
    live.clear();
    *exact = false;
  }
  return live;
}

report::Report Capture::snapshot(uint64_t now, double ns_per_tick,
                                 const std::string& command) const {
  RecMeta meta;
  std::vector<RecGil> gils;
  describe(now, command, &meta, &gils);
  RecEnd end{now, ns_per_tick, drops_no_ring()};
  const auto live = live_totals(now, &end.totals_exact);
  report::Report r = build_report(aggregator_, meta, gils, end, live);
  if (host_ids_) report::apply_host_ids(r, host_ids_->host_pid(), host_ids_->known());
  attach_live_modules(r);
  return r;
}

void Capture::attach_live_modules(report::Report& r) const {
  if (!region_.corrupt()) {
    try {
      last_modules_ = region_.modules();
      last_not_hooked_ = region_.modules_not_hooked();
      have_modules_ = true;
    } catch (const RegionCorrupt&) {
      // region_.corrupt() says so from now on; the last good table stays.
    }
  }
  if (have_modules_) report::attach_modules(r, last_modules_, last_not_hooked_);
}

report::Report Capture::finish(uint64_t window_end, double ns_per_tick,
                               const std::string& command) {
  if (taker_) taker_->stop();  // the last poll below takes the rest itself
  if (!region_.corrupt()) {
    try {
      poll();
    } catch (const RegionCorrupt&) {
      // region_.corrupt() tells the caller; what was read so far is closed below.
    }
  }
  const int32_t pid = region_.corrupt() ? last_meta_.pid : region_.header().claim_pid.load();
  // The main thread needs no `threading` import to be the main thread.
  if (pid > 0 && !names_.count(static_cast<uint32_t>(pid))) {
    aggregator_.set_thread_name(static_cast<uint32_t>(pid), "MainThread");
    if (writer_) writer_->name(static_cast<uint32_t>(pid), "MainThread");
  }
  RecMeta meta;
  std::vector<RecGil> gils;
  describe(window_end, command, &meta, &gils);
  RecEnd end{window_end, ns_per_tick, drops_no_ring()};
  const auto live = live_totals(window_end, &end.totals_exact);
  if (host_ids_) sync_host_ids();
  if (writer_) {
    writer_->meta(meta);
    for (const auto& g : gils) writer_->gil(g);
    for (const auto& t : live) writer_->totals(t);
  }
  report::Report r = build_report(aggregator_, meta, gils, end, live);
  if (host_ids_) report::apply_host_ids(r, host_ids_->host_pid(), host_ids_->known());
  attach_live_modules(r);
  if (writer_) {
    if (have_modules_)
      for (const auto& m : last_modules_) writer_->module(m, last_not_hooked_);
    writer_->end(end);
  }
  return r;
}

report::Report build_report(const report::Aggregator& aggregator, const RecMeta& meta,
                            const std::vector<RecGil>& gils, const RecEnd& end,
                            std::span<const report::ExactTotals> live) {
  report::RecordingInfo info;
  info.pid = meta.pid;
  info.gilstat_version = meta.gilstat_version;
  info.command = meta.command;
  info.clock = meta.clock;
  info.ns_per_tick = end.ns_per_tick;
  info.python_version = meta.py_version;
  info.py_version_hex = meta.py_version_hex;
  info.free_threaded = meta.free_threaded;
  info.libpython_shared = meta.libpython_shared;
  info.window_start = meta.window_start;
  info.window_end = end.window_end;
  info.drops_no_ring = end.drops_no_ring;
  info.totals_exact = end.totals_exact;
  std::vector<report::GilInfo> infos;
  for (const auto& g : gils)
    infos.push_back({g.index, g.address, g.initial_switch_number, g.final_switch_number,
                     g.initial_holder, g.interp_ids, g.counters, g.acquisitions, g.switches,
                     g.drop_requests, g.arm_ts, g.at_arm});
  return aggregator.finish(info, infos, live);
}

}  // namespace gilstat::proto

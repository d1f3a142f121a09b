#include "report/aggregator.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <tuple>

#include "report/groups.hpp"

namespace gilstat::report {

using proto::EventKind;

namespace {

bool is_sequenced(EventKind kind) {
  return kind == EventKind::Acquire || kind == EventKind::Release || kind == EventKind::DropRequest;
}

uint64_t to_ns(long double ticks, double ns_per_tick) {
  const long double ns = std::round(ticks * ns_per_tick);
  if (!(ns > 0)) return 0;
  return ns >= 18446744073709551615.0L ? UINT64_MAX : static_cast<uint64_t>(ns);
}

DurationStats stats_ns(const Histogram& h, double ns_per_tick) {
  DurationStats s;
  s.p50 = to_ns(h.percentile(0.50), ns_per_tick);
  s.p90 = to_ns(h.percentile(0.90), ns_per_tick);
  s.p99 = to_ns(h.percentile(0.99), ns_per_tick);
  s.max = to_ns(h.max(), ns_per_tick);
  s.total = to_ns(static_cast<long double>(h.total()), ns_per_tick);
  s.count = h.count();
  return s;
}

// The enabled history cut to [start, end]: the state at `start` (the last
// change before it), then the changes inside, in time order; and the time
// it was disabled.  The probe emits the state when it arms a GIL, so for a
// GIL armed after `start` (a later subinterpreter) it begins there.
void enabled_history(std::vector<std::pair<uint64_t, uint32_t>> events, uint64_t start,
                     uint64_t end, double ns_per_tick, GilReport* out) {
  if (events.empty() || end <= start) return;
  std::stable_sort(events.begin(), events.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  uint32_t state = events.front().second;
  uint64_t since = std::max(start, events.front().first);
  if (since > end) return;
  size_t i = 0;
  for (; i < events.size() && events[i].first <= since; ++i) state = events[i].second;
  out->enabled_changes.push_back({static_cast<double>(since - start) * ns_per_tick, state});
  uint64_t disabled = 0;
  for (; i < events.size() && events[i].first <= end; ++i) {
    if (events[i].second == state) continue;
    if (state == 0) disabled += events[i].first - since;
    state = events[i].second;
    since = events[i].first;
    out->enabled_changes.push_back(
        {static_cast<double>(events[i].first - start) * ns_per_tick, state});
  }
  if (state == 0) disabled += end - since;
  out->disabled_ns = static_cast<double>(disabled) * ns_per_tick;
}

uint64_t sat_add(uint64_t a, uint64_t b) {
  uint64_t s = 0;
  return __builtin_add_overflow(a, b, &s) ? UINT64_MAX : s;
}

// The figures ExactTotals and ThreadTimes share, as `op` combines them
// (assignment, or a saturating sum: a target may claim anything).
template <typename To, typename From, typename Op>
void combine_times(To& a, const From& b, Op op) {
  a.lifetime = op(a.lifetime, b.lifetime);
  a.held = op(a.held, b.held);
  a.wait = op(a.wait, b.wait);
  a.released = op(a.released, b.released);
  a.acquisitions = op(a.acquisitions, b.acquisitions);
  a.forced_handoffs = op(a.forced_handoffs, b.forced_handoffs);
}
template <typename To, typename From>
void copy_times(To& a, const From& b) {
  combine_times(a, b, [](uint64_t, uint64_t v) { return v; });
}

// Adds b's figures to a's.
void accumulate(ExactTotals& a, const ExactTotals& b) {
  a.ring_flags |= b.ring_flags;
  combine_times(a, b, sat_add);
}

// Adds t to its (thread, GIL) entry of `totals`, keyed as the timelines are;
// at most `limit` entries (a target may name any number of threads).
void add_totals(std::unordered_map<uint64_t, ExactTotals>& totals, const ExactTotals& t,
                size_t limit) {
  if (t.gil >= proto::kMaxGils) return;
  const uint64_t k = uint64_t{t.tid} << 8 | t.gil;
  auto it = totals.find(k);
  if (it == totals.end()) {
    if (totals.size() >= limit) return;
    ExactTotals zero;
    zero.tid = t.tid;
    zero.gil = t.gil;
    it = totals.emplace(k, zero).first;
  }
  accumulate(it->second, t);
}

// Adds the stretch from the arm to a thread's first state change (or to
// the window's end) to the probe's totals, which start at that change.
void add_arm_stretch(ExactTotals& e, const ThreadTimeline::ArmStretch& a) {
  using State = ThreadTimeline::State;
  if (a.state == State::None || a.d == 0) return;
  uint64_t& bucket = a.state == State::Holding   ? e.held
                     : a.state == State::Waiting ? e.wait
                                                 : e.released;
  bucket = sat_add(bucket, a.d);
  e.lifetime = sat_add(e.lifetime, a.d);
}

}  // namespace

std::map<uint64_t, ThreadTimeline> Aggregator::declared_at_arm(
    const std::vector<GilInfo>& gils) const {
  std::map<uint64_t, ThreadTimeline> out;
  for (const GilInfo& g : gils) {
    if (g.index >= proto::kMaxGils || g.arm_ts == 0) continue;
    bool holder_seen = false;  // one holder per GIL, whatever a recording claims
    for (const auto& [tid, role] : g.at_arm) {
      if (out.size() >= proto::kMaxGils * size_t{64}) break;  // a hostile recording's claims
      if ((role != kArmHolds && role != kArmWaits) || (role == kArmHolds && holder_seen)) continue;
      holder_seen |= role == kArmHolds;
      const uint64_t k = key(tid, static_cast<uint8_t>(g.index));
      auto it = timelines_.find(k);
      ThreadTimeline tl = it != timelines_.end() ? it->second : ThreadTimeline(window_);
      tl.declare_at_arm(role == kArmHolds ? ThreadTimeline::State::Holding
                                          : ThreadTimeline::State::Waiting);
      out.insert_or_assign(k, std::move(tl));
    }
  }
  return out;
}

Aggregator::GilEntry& Aggregator::find_gil_entry(uint8_t gil) {
  auto it = gils_.find(gil);
  if (it == gils_.end())
    it = gils_.emplace(gil, GilEntry{GilStream(reorder_limit_, 1, window_)}).first;
  cache_.gil = gil;
  cache_.gil_entry = &it->second;
  return it->second;
}

ThreadTimeline* Aggregator::find_timeline(uint64_t k) {
  auto it = timelines_.find(k);
  if (it == timelines_.end()) {
    if (timelines_.size() >= max_threads_) return nullptr;
    it = timelines_.emplace(k, ThreadTimeline(window_)).first;
  }
  cache_.key = k;
  cache_.timeline = &it->second;
  return &it->second;
}

void Aggregator::add_events(uint32_t tid, uint32_t ring_flags, const proto::Event* events,
                            size_t n) {
  for (size_t i = 0; i < n; ++i) add_event(tid, ring_flags, events[i]);
}

void Aggregator::add_event(uint32_t tid, uint32_t ring_flags, const proto::Event& ev) {
  const auto kind = static_cast<EventKind>(ev.kind);
  // About the GIL, not the thread that happened to notice: no thread row.
  if (kind == EventKind::GilEnabled) {
    auto& entry = gil_entry(ev.gil);
    if (entry.enabled.size() < kMaxEnabledChanges)
      entry.enabled.emplace_back(ev.ts,
                                 static_cast<uint32_t>(std::min<uint64_t>(ev.value, UINT32_MAX)));
    else
      ++entry.enabled_lost;  // said in the report: the disabled time is then approximate
    return;
  }
  if ((ring_flags & proto::kRingOwnThread) && key(tid, ev.gil) != cache_.key)
    own_threads_.insert(tid);
  ThreadTimeline* tl = timeline(tid, ev.gil);
  if (!tl) {
    ++untracked_events_;
    return;
  }
  tl->add(kind, ev.ts);
  GilEntry& gil = gil_entry(ev.gil);
  if (kind == EventKind::ForcedHandoff && window_.contains(ev.ts)) ++gil.forced_handoffs;
  if (is_sequenced(kind)) {
    if (ev.seq != 0) {
      gil.stream.add(tid, ev);
    } else {
      gil.stream.add_anomaly();  // the probe numbers all of these
    }
  }
}

void Aggregator::set_thread_name(uint32_t tid, std::string name) {
  if (names_.size() >= max_threads_ && !names_.contains(tid)) return;
  names_[tid] = std::move(name);
}

void Aggregator::add_thread_drops(uint32_t tid, uint64_t n) { drops_[tid] += n; }

void Aggregator::add_thread_totals(const ExactTotals& t) { add_totals(totals_, t, max_threads_); }

std::string Aggregator::row_name(uint32_t tid, bool own) const {
  if (own) return "gilstat";
  if (auto it = names_.find(tid); it != names_.end() && !it->second.empty()) return it->second;
  return fmt::format("native-{}", tid);
}

void Aggregator::fold_exited(uint32_t tid, std::span<const uint64_t> arm_ts, uint64_t end) {
  const bool own = own_threads_.contains(tid);
  uint64_t drops = 0;
  if (auto it = drops_.find(tid); it != drops_.end()) {
    drops = it->second;
    drops_.erase(it);
  }
  exited_drops_ = sat_add(exited_drops_, drops);
  for (uint32_t gil = 0; gil < proto::kMaxGils; ++gil) {
    const uint64_t k = key(tid, static_cast<uint8_t>(gil));
    const auto tl = timelines_.find(k);
    const auto tot = totals_.find(k);
    if (tl == timelines_.end() && tot == totals_.end()) continue;
    const bool own_row =
        own || (tot != totals_.end() && (tot->second.ring_flags & proto::kRingOwnThread));
    const std::string name = row_name(tid, own_row);
    GroupId id{own_row, own_row ? std::string("gilstat") : group_key(name), gil};
    if (!exited_.contains(id) && exited_.size() >= kMaxExitedGroups) std::get<1>(id) = "exited-N";
    Exited& x = exited_[id];
    ++x.threads;
    x.drops = sat_add(x.drops, drops);
    const uint64_t armed = gil < arm_ts.size() ? arm_ts[gil] : 0;
    ThreadTimes t;
    ThreadTimeline::ArmStretch arm;
    if (tl != timelines_.end()) {
      t = tl->second.finish(end, armed);
      arm = tl->second.at_arm(armed, end);
    }
    ExactTotals e;
    if (tot != totals_.end()) {
      e = tot->second;
      add_arm_stretch(e, arm);
    } else {
      copy_times(e, t);
    }
    accumulate(x.exact, e);
    combine_times(x.events, t, sat_add);
    x.events.anomalies = sat_add(x.events.anomalies, t.anomalies);
    x.events.wait_hist.merge(t.wait_hist);
    x.events.hold_hist.merge(t.hold_hist);
    if (recent_folds_.insert_or_assign(k, id).second) recent_order_.push_back(k);
    if (tl != timelines_.end()) timelines_.erase(tl);
    if (tot != totals_.end()) totals_.erase(tot);
  }
  while (recent_order_.size() > kMaxRecentFolds) {
    recent_folds_.erase(recent_order_.front());
    recent_order_.pop_front();
  }
  // Drop latencies of threads without a row: a folded one's go to its group;
  // any other's (no row to show them) are not kept.
  for (auto& g : gils_) {
    const auto gil = static_cast<uint8_t>(g.first);  // (a lambda cannot capture a binding)
    g.second.stream.extract_drop_latency([&](uint32_t t, const Histogram& h) {
      const uint64_t k = key(t, gil);
      if (timelines_.contains(k)) return false;
      if (auto it = recent_folds_.find(k); it != recent_folds_.end())
        exited_[it->second].drop_latency.merge(h);
      return true;
    });
  }
  cache_ = LookupCache();  // it may point at an erased timeline
  names_.erase(tid);
  own_threads_.erase(tid);
}

size_t Aggregator::thread_rows() const {
  size_t n = timelines_.size();
  for (const auto& [k, t] : totals_) n += !timelines_.contains(k);
  return n;
}

Report Aggregator::finish(const RecordingInfo& info, const std::vector<GilInfo>& gil_infos,
                          std::span<const ExactTotals> live) const {
  const double f = info.ns_per_tick;
  Report r;
  r.gilstat_version = info.gilstat_version;
  r.pid = info.pid;
  r.command = info.command;
  r.clock = info.clock;
  r.ns_per_tick = f;
  r.python_version = info.python_version;
  r.py_version_hex = info.py_version_hex;
  r.free_threaded = info.free_threaded;
  r.libpython_shared = info.libpython_shared;
  const uint64_t window =
      info.window_end > info.window_start ? info.window_end - info.window_start : 0;
  r.duration_s = static_cast<double>(window) * f / 1e9;
  r.window.until_s = r.duration_s;  // the whole window unless `report --until` narrows it
  r.drops_no_ring = info.drops_no_ring;
  r.untracked_events = untracked_events_;
  r.drops = info.drops_no_ring;
  for (const auto& [tid, n] : drops_) r.drops += n;
  r.drops += exited_drops_;

  // Every GIL the probe knew of, plus any that only appears in events.
  std::map<uint32_t, const GilInfo*> ids;
  for (const auto& [id, entry] : gils_) ids.emplace(id, nullptr);
  for (const GilInfo& g : gil_infos) ids[g.index] = &g;
  std::map<uint32_t, GilTimes> gil_times;
  for (const auto& [id, g] : ids) {
    if (auto it = gils_.find(id); it != gils_.end())
      gil_times.emplace(id, it->second.stream.finish(info.window_end));
  }

  // The probe's totals, when they cover the window: ended threads' plus
  // the running ones'.
  const bool exact = info.totals_exact && window_.whole();
  r.totals_exact = exact;
  std::unordered_map<uint64_t, ExactTotals> totals;
  if (exact) {
    totals = totals_;
    for (const ExactTotals& t : live) add_totals(totals, t, max_threads_);
  }
  // Rows: every (thread, GIL) with events, those whose events were all
  // lost but whose totals are known, and the threads known to hold or wait
  // at the arm (copies of their timelines, told so).
  std::map<uint64_t, const ThreadTimeline*> keys;
  for (const auto& [k, timeline] : timelines_) keys.emplace(k, &timeline);
  const std::map<uint64_t, ThreadTimeline> declared = declared_at_arm(gil_infos);
  for (const auto& [k, timeline] : declared)
    if (keys.size() < max_threads_ || keys.contains(k)) keys[k] = &timeline;
  for (const auto& [k, t] : totals)
    if (keys.size() < max_threads_ || keys.contains(k)) keys.emplace(k, nullptr);
  auto arm_ts = [&](uint32_t gil) -> uint64_t {
    auto it = ids.find(gil);
    return it != ids.end() && it->second ? it->second->arm_ts : 0;
  };
  std::map<uint32_t, uint32_t> waiting_now;  // by GIL
  std::map<uint32_t, Histogram> arm_holds;   // holds since before the arm, by GIL
  std::map<uint32_t, std::pair<uint32_t, uint64_t>> declared_hold;  // GIL -> (tid, arm_ts)

  // Per (thread, GIL) rows; their wait histograms also make the GIL's.
  std::map<uint32_t, Histogram> gil_waits;
  std::map<uint32_t, uint64_t> waiting;   // Σ waits of the program's threads (not gilstat's)
  std::map<uint32_t, uint64_t> holding;   // Σ holds, from exact totals
  std::map<uint32_t, uint64_t> handoffs;  // Σ forced hand-offs, from exact totals
  for (const auto& [k, timeline] : keys) {
    const auto gil = static_cast<uint32_t>(k & 0xff);
    const uint64_t armed = arm_ts(gil);
    ThreadTimes t = timeline ? timeline->finish(info.window_end, armed) : ThreadTimes{};
    const ThreadTimeline::ArmStretch arm =
        timeline ? timeline->at_arm(armed, info.window_end) : ThreadTimeline::ArmStretch{};
    const auto exact_row = totals.find(k);
    if (exact_row != totals.end()) {
      ExactTotals e = exact_row->second;
      add_arm_stretch(e, arm);
      copy_times(t, e);
      t.in_window = true;
    }
    if (!window_.whole() && !t.in_window) continue;
    ThreadReport row;
    row.tid = static_cast<uint32_t>(k >> 8);
    row.gil = gil;
    if (arm.state == ThreadTimeline::State::Holding) {
      row.at_attach = "holding";
      if (arm.d) arm_holds[gil].add(arm.d);  // the stream saw no Acquire for it
    }
    if (arm.state == ThreadTimeline::State::Waiting) row.at_attach = "waiting";
    if (timeline && timeline->only_declared() && arm.state == ThreadTimeline::State::Holding)
      declared_hold[gil] = {row.tid, armed};
    row.own = own_threads_.contains(row.tid) ||
              (exact_row != totals.end() && (exact_row->second.ring_flags & proto::kRingOwnThread));
    if (!row.own && timeline &&
        (timeline->state() == ThreadTimeline::State::Waiting ||
         (timeline->only_declared() && arm.state == ThreadTimeline::State::Waiting)))
      ++waiting_now[gil];
    // A thread known only from outside (no event, no ring yet) holds from
    // the arm: its time is exact too.
    if (exact_row != totals.end() || arm.state != ThreadTimeline::State::None) {
      holding[row.gil] = sat_add(holding[row.gil], t.held);
      handoffs[row.gil] = sat_add(handoffs[row.gil], t.forced_handoffs);
    }
    row.name = row_name(row.tid, row.own);
    row.lifetime_ns = static_cast<double>(t.lifetime) * f;
    row.held_ns = static_cast<double>(t.held) * f;
    row.wait_total_ns = static_cast<double>(t.wait) * f;
    row.released_ns = static_cast<double>(t.released) * f;
    row.acquisitions = t.acquisitions;
    row.forced_handoffs = t.forced_handoffs;
    if (auto it = drops_.find(row.tid); it != drops_.end()) row.drops = it->second;
    row.anomalies = t.anomalies;
    row.wait_ns = stats_ns(t.wait_hist, f);
    row.hold_ns = stats_ns(t.hold_hist, f);
    row.wait_hist = t.wait_hist.scaled(f);
    row.hold_hist = t.hold_hist.scaled(f);
    if (auto g = gil_times.find(row.gil); g != gil_times.end()) {
      const auto& by_tid = g->second.drop_latency_by_tid;
      if (auto d = by_tid.find(row.tid); d != by_tid.end())
        row.drop_latency_ns = stats_ns(d->second, f);
    }
    gil_waits[row.gil].merge(t.wait_hist);
    if (!row.own) waiting[row.gil] = sat_add(waiting[row.gil], t.wait);
    r.threads.push_back(std::move(row));
  }
  // The exited threads, one row per group and GIL (only live captures fold:
  // their window is whole), with the drop latencies of theirs the GIL's
  // reorder buffer gave out only now.
  std::map<GroupId, Histogram> late_latency;
  for (const auto& [k, id] : recent_folds_) {
    const auto g = gil_times.find(static_cast<uint32_t>(k & 0xff));
    if (keys.contains(k) || g == gil_times.end()) continue;
    const auto& by_tid = g->second.drop_latency_by_tid;
    if (auto d = by_tid.find(static_cast<uint32_t>(k >> 8)); d != by_tid.end())
      late_latency[id].merge(d->second);
  }
  for (const auto& [id, x] : exited_) {
    const auto& [own, group, gil] = id;
    ThreadReport row;
    row.name = group;
    row.own = own;
    row.gil = gil;
    row.exited_threads = x.threads;
    const ExactTotals& e = x.exact;
    const ThreadTimes& t = x.events;
    row.lifetime_ns = static_cast<double>(exact ? e.lifetime : t.lifetime) * f;
    row.held_ns = static_cast<double>(exact ? e.held : t.held) * f;
    row.wait_total_ns = static_cast<double>(exact ? e.wait : t.wait) * f;
    row.released_ns = static_cast<double>(exact ? e.released : t.released) * f;
    row.acquisitions = exact ? e.acquisitions : t.acquisitions;
    row.forced_handoffs = exact ? e.forced_handoffs : t.forced_handoffs;
    row.drops = x.drops;
    row.anomalies = t.anomalies;
    row.wait_ns = stats_ns(t.wait_hist, f);
    row.hold_ns = stats_ns(t.hold_hist, f);
    row.wait_hist = t.wait_hist.scaled(f);
    row.hold_hist = t.hold_hist.scaled(f);
    Histogram latency = x.drop_latency;
    if (auto l = late_latency.find(id); l != late_latency.end()) latency.merge(l->second);
    row.drop_latency_ns = stats_ns(latency, f);
    holding[gil] = sat_add(holding[gil], exact ? e.held : t.held);
    handoffs[gil] = sat_add(handoffs[gil], exact ? e.forced_handoffs : t.forced_handoffs);
    gil_waits[gil].merge(t.wait_hist);
    if (!own) waiting[gil] = sat_add(waiting[gil], exact ? e.wait : t.wait);
    r.threads.push_back(std::move(row));
  }
  std::sort(r.threads.begin(), r.threads.end(), [](const ThreadReport& a, const ThreadReport& b) {
    return std::tuple(-a.held_ns, a.tid, a.gil) < std::tuple(-b.held_ns, b.tid, b.gil);
  });
  r.groups = group_threads(r.threads);

  for (const auto& [id, g] : ids) {
    GilReport out;
    out.id = id;
    GilTimes t;
    if (auto it = gils_.find(id); it != gils_.end()) {
      t = gil_times.at(id);
      out.forced_handoffs = it->second.forced_handoffs;
      enabled_history(it->second.enabled, info.window_start, info.window_end, f, &out);
      out.enabled_changes_lost = it->second.enabled_lost;
    }
    t.hold_hist.merge(arm_holds[id]);  // holds running at the arm: no Acquire in the stream
    if (g) {
      out.address = g->address;
      out.interpreters = g->interp_ids;
      out.switch_number_delta =
          static_cast<int64_t>(g->final_switch_number - g->initial_switch_number);
    }
    out.switch_number_known = window_.whole();
    out.acquisitions = t.acquisitions;
    out.switches = t.switches(g ? g->initial_holder : 0);
    out.forced_switch_requests = t.drop_requests;
    if (exact && g && g->counters) {
      out.acquisitions = g->acquisitions;
      out.switches = g->switches;
      out.forced_switch_requests = g->drop_requests;
    }
    if (exact) out.forced_handoffs = handoffs[id];
    out.seq_gaps = t.seq_gaps;
    out.seq_stale = t.seq_stale;
    out.anomalies = t.anomalies;
    if (t.open_hold) {
      out.holder_tid = t.open_holder_tid;
      out.holder_for_ns = info.window_end > t.open_hold_since
                              ? static_cast<double>(info.window_end - t.open_hold_since) * f
                              : 0.0;
    } else if (auto d = declared_hold.find(id); d != declared_hold.end()) {
      // Holding since the arm, not released since (a release is an event).
      out.holder_tid = d->second.first;
      out.holder_since_attach = true;
      out.holder_for_ns = info.window_end > d->second.second
                              ? static_cast<double>(info.window_end - d->second.second) * f
                              : 0.0;
    }
    out.waiting_now = waiting_now[id];
    const uint64_t held = exact ? holding[id] : t.hold_hist.total();
    out.utilization = window ? static_cast<double>(held) / static_cast<double>(window) : 0.0;
    const Histogram& waits = gil_waits[id];
    out.mean_waiting_threads =
        window ? static_cast<double>(waiting[id]) / static_cast<double>(window) : 0.0;
    out.wait_ns = stats_ns(waits, f);
    out.hold_ns = stats_ns(t.hold_hist, f);
    out.handoff_ns = stats_ns(t.handoff_hist, f);
    out.drop_latency_ns = stats_ns(t.drop_latency_hist, f);
    out.wait_hist = waits.scaled(f);
    out.hold_hist = t.hold_hist.scaled(f);
    out.handoff_hist = t.handoff_hist.scaled(f);
    out.drop_latency_hist = t.drop_latency_hist.scaled(f);
    r.gils.push_back(std::move(out));
  }
  return r;
}

}  // namespace gilstat::report

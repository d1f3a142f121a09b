// Turns the probe's raw events into a Report: per (thread, GIL) timelines in
// each thread's own order, plus one seq-ordered stream per GIL.  Memory grows
// with threads and GILs, never with events (apart from the bounded reorder
// buffer of each GIL).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <span>
#include <string>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "gilstat/protocol.hpp"
#include "report/exact_totals.hpp"
#include "report/gil_stream.hpp"
#include "report/report.hpp"
#include "report/thread_timeline.hpp"

namespace gilstat::report {

struct RecordingInfo {
  int pid = 0;
  std::string gilstat_version;
  std::string command;
  proto::ClockKind clock = proto::ClockKind::Monotonic;
  double ns_per_tick = 1.0;  // 1.0 for Monotonic
  std::string python_version;
  uint32_t py_version_hex = 0;
  bool free_threaded = false;
  bool libpython_shared = false;
  uint64_t window_start = 0;  // raw clock units
  uint64_t window_end = 0;
  uint64_t drops_no_ring = 0;
  // The probe's exact totals (add_thread_totals, finish's `live`) and GIL
  // counters cover the whole window: they replace what the events add up
  // to, which undercounts when events were lost.
  bool totals_exact = false;
};

struct GilInfo {
  uint32_t index = 0;
  uint64_t address = 0;
  uint64_t initial_switch_number = 0;
  uint64_t final_switch_number = 0;
  uint64_t initial_holder = 0;
  std::vector<int64_t> interp_ids;
  // The probe's exact counters (proto::GilSlot), when known.
  bool counters = false;
  uint64_t acquisitions = 0;
  uint64_t switches = 0;
  uint64_t drop_requests = 0;
  // When the probe armed this GIL (raw clock units; 0: unknown), and the
  // threads known from outside to hold it (1) or wait for it (2) then.
  uint64_t arm_ts = 0;
  std::vector<std::pair<uint32_t, uint8_t>> at_arm = {};
};

// GilInfo::at_arm roles.
inline constexpr uint8_t kArmHolds = 1;
inline constexpr uint8_t kArmWaits = 2;

class Aggregator {
 public:
  static constexpr size_t kDefaultReorderLimit = size_t{1} << 16;
  // Rows (thread, GIL) tracked at most: each costs two histograms (~30 KiB),
  // and a damaged or hostile recording can name any number of threads.
  // Events of threads beyond it are counted in Report::untracked_events.
  static constexpr size_t kDefaultMaxThreads = size_t{1} << 16;

  explicit Aggregator(size_t reorder_limit = kDefaultReorderLimit, const TimeWindow& window = {})
      : reorder_limit_(reorder_limit), window_(window) {}
  // Only the part of the recording inside `window` is counted (the caller
  // then passes the window's edges as window_start/window_end to finish).
  explicit Aggregator(const TimeWindow& window) : Aggregator(kDefaultReorderLimit, window) {}

  // Events of one tid must come in that thread's ring order; threads may
  // interleave arbitrarily.  ring_flags & proto::kRingOwnThread marks the
  // probe's own thread.
  void add_event(uint32_t tid, uint32_t ring_flags, const proto::Event& ev);
  // The same for a run of one thread's events (the recording reader's batches).
  void add_events(uint32_t tid, uint32_t ring_flags, const proto::Event* events, size_t n);
  void set_thread_name(uint32_t tid, std::string name);
  void set_max_threads(size_t n) { max_threads_ = n; }

  // Adds n ring-full drops to tid's count (pass deltas, not the ring's
  // running counter: a ring is reused by later threads).
  void add_thread_drops(uint32_t tid, uint64_t n);
  // Adds the final totals of a thread that has ended (one ring's thread;
  // a tid reused later adds up).
  void add_thread_totals(const ExactTotals& t);

  // Folds every row of thread `tid`, which has ended and whose events have
  // all been added, into one row per (group, GIL) of exited threads
  // (report/groups.hpp), so that a live view watching a service that starts
  // a thread per request keeps a bounded number of rows.  Every sum (the
  // group's, the GIL's, the report's) stays exactly what it was; only the
  // thread's own row is gone.  arm_ts: per GIL index, when the probe armed
  // it (0: unknown); end: now, in raw clock units, where a hold or wait left
  // open by lost events is closed.  Not for a TimeWindow narrower than all.
  void fold_exited(uint32_t tid, std::span<const uint64_t> arm_ts, uint64_t end);
  // (thread, GIL) rows kept for threads: those with events or totals, not
  // folded.  Rows of exited threads (kept per group) are not counted.
  size_t thread_rows() const;
  size_t exited_rows() const { return exited_.size(); }

  // The report as if the recording ended now.  const: it closes open holds
  // and flushes the reorder buffers on copies, so it may be called again
  // (e.g. by a live view) while events keep coming.  `live`: the totals of
  // threads still running (used with info.totals_exact only).
  Report finish(const RecordingInfo& info, const std::vector<GilInfo>& gils,
                std::span<const ExactTotals> live = {}) const;

 private:
  // GilEnabled events kept per GIL: real programs change it twice per
  // extension module of unknown safety; a damaged recording may claim more.
  static constexpr size_t kMaxEnabledChanges = 4096;
  struct GilEntry {
    GilStream stream;
    uint64_t forced_handoffs = 0;
    std::vector<std::pair<uint64_t, uint32_t>> enabled = {};  // (ts, enabled), arrival order
    uint64_t enabled_lost = 0;  // GilEnabled events past kMaxEnabledChanges
  };
  static uint64_t key(uint32_t tid, uint8_t gil) { return uint64_t{tid} << 8 | gil; }
  GilEntry& gil_entry(uint8_t gil) {
    return gil == cache_.gil ? *cache_.gil_entry : find_gil_entry(gil);
  }
  GilEntry& find_gil_entry(uint8_t gil);
  // Null when the row limit is reached.
  ThreadTimeline* timeline(uint32_t tid, uint8_t gil) {
    const uint64_t k = key(tid, gil);
    return k == cache_.key ? cache_.timeline : find_timeline(k);
  }
  ThreadTimeline* find_timeline(uint64_t k);
  // The rows of exited threads of one group on one GIL (fold_exited).
  struct Exited {
    uint64_t threads = 0;
    ThreadTimes events;  // what their events add up to (arm stretch included)
    ExactTotals exact;   // their exact totals (the events' where none were known)
    uint64_t drops = 0;
    Histogram drop_latency;
  };
  using GroupId = std::tuple<bool, std::string, uint32_t>;  // (own, group key, GIL)
  // A target naming every thread differently makes a group per thread: past
  // this many groups, exited threads of new groups share one row per GIL.
  static constexpr size_t kMaxExitedGroups = 4096;
  // The name a thread's row shows.
  std::string row_name(uint32_t tid, bool own) const;
  // Copies of the timelines of the threads GilInfo::at_arm names (new ones
  // for threads without events), told their state at the arm.
  std::map<uint64_t, ThreadTimeline> declared_at_arm(const std::vector<GilInfo>& gils) const;

  size_t reorder_limit_;
  TimeWindow window_;
  size_t max_threads_ = kDefaultMaxThreads;
  uint64_t untracked_events_ = 0;
  // The last (thread, GIL) and GIL looked up: events come in runs of one
  // thread, so the hash lookups are mostly skipped.  Elements of both
  // containers never move; a copy of the aggregator starts with an empty cache.
  struct LookupCache {
    uint64_t key = UINT64_MAX;
    ThreadTimeline* timeline = nullptr;
    int gil = -1;
    GilEntry* gil_entry = nullptr;
    LookupCache() = default;
    LookupCache(const LookupCache&) {}
    LookupCache& operator=(const LookupCache&) {
      key = UINT64_MAX;
      timeline = nullptr;
      gil = -1;
      gil_entry = nullptr;
      return *this;
    }
  };
  LookupCache cache_;
  std::unordered_map<uint64_t, ThreadTimeline> timelines_;  // by key(tid, gil)
  std::map<uint32_t, GilEntry> gils_;
  std::unordered_map<uint32_t, std::string> names_;
  std::unordered_map<uint32_t, uint64_t> drops_;
  std::unordered_map<uint64_t, ExactTotals> totals_;  // by key(tid, gil), same bound
  std::unordered_set<uint32_t> own_threads_;
  std::map<GroupId, Exited> exited_;
  uint64_t exited_drops_ = 0;  // ring-full drops of the folded threads
  // The groups of the (thread, GIL) rows folded lately: drop latencies of
  // theirs may still come out of a GIL's reorder buffer (behind lost
  // events), and are charged to the group.  At most kMaxRecentFolds.
  static constexpr size_t kMaxRecentFolds = 4096;
  std::unordered_map<uint64_t, GroupId> recent_folds_;
  std::deque<uint64_t> recent_order_;
};

}  // namespace gilstat::report

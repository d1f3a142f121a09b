// The aggregated result of a recording, what the renderers print.  It mirrors
// the JSON schema written by render_json (see render_json.hpp).  Every
// duration is in nanoseconds (converted from raw clock units by Aggregator).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gilstat/protocol.hpp"
#include "report/gil_profile.hpp"
#include "report/histogram.hpp"
#include "report/hogs.hpp"
#include "report/modules.hpp"

namespace gilstat::report {

// Percentiles and totals of one duration distribution, in ns.
struct DurationStats {
  uint64_t p50 = 0;
  uint64_t p90 = 0;
  uint64_t p99 = 0;
  uint64_t max = 0;
  uint64_t total = 0;
  uint64_t count = 0;
};

// Free-threaded builds: CPython's gil->enabled from a moment on (0 =
// disabled, INT_MAX = enabled for good, n = n transient requests).
struct EnabledChange {
  double at_ns = 0;  // since the window's start
  uint32_t enabled = 0;
};
inline constexpr uint32_t kEnabledForGood = 0x7fffffff;  // INT_MAX

struct GilReport {
  uint32_t id = 0;  // index into the probe's GIL table
  uint64_t address = 0;
  std::vector<int64_t> interpreters;
  // Σ holds / window length, NOT clamped: > 1 means the clocks or the
  // reconstruction disagree, which renderers must show rather than hide.
  double utilization = 0;
  // Σ waits of the program's threads / window length: how many of them
  // wait on average.
  double mean_waiting_threads = 0;
  uint64_t acquisitions = 0;
  uint64_t switches = 0;            // acquisitions whose tstate differs from the previous one
  int64_t switch_number_delta = 0;  // CPython's own count over the window
  uint64_t forced_switch_requests = 0;
  uint64_t forced_handoffs = 0;
  // CPython's counter is only known at the end of a complete recording, and
  // only comparable with `switches` over the whole window.
  bool switch_number_known = true;
  uint64_t seq_gaps = 0;   // seq numbers never seen (events lost before ordering)
  uint64_t seq_stale = 0;  // events arriving after their seq was skipped, or duplicates
  uint64_t anomalies = 0;  // GIL-level transitions that should not happen
  // The thread holding the GIL at the window's end (0: none seen holding
  // it, i.e. free, or not yet acquired since the attach) and for how long
  // it had held it then: a live view's current holder.
  uint32_t holder_tid = 0;
  double holder_for_ns = 0;
  // The holder has held it since the probe armed (it was holding when
  // gilstat attached, and has not let go since): holder_for_ns counts from
  // the arm, its hold began earlier.
  bool holder_since_attach = false;
  // The program's threads (not gilstat's) waiting for this GIL at the window's end.
  uint32_t waiting_now = 0;
  DurationStats wait_ns;
  DurationStats hold_ns;
  DurationStats handoff_ns;
  // First forced-switch request of a hold -> its release (see GilTimes).
  DurationStats drop_latency_ns;
  // The full distributions (ns), for drawing.
  Histogram wait_hist;
  Histogram hold_hist;
  Histogram handoff_hist;
  Histogram drop_latency_hist;
  // Free-threaded builds: the GIL's `enabled` state at the window's start
  // (first entry, at 0) and every change in the window; empty on GIL
  // builds.  disabled_ns: time of the window it was disabled (0 there).
  std::vector<EnabledChange> enabled_changes;
  double disabled_ns = 0;
  // Changes beyond what the report keeps per GIL (a damaged recording, or a
  // program that toggles it thousands of times): disabled_ns is approximate.
  uint64_t enabled_changes_lost = 0;
};

// One row per (thread, GIL).  Times are doubles in ns so that the parts add
// up to the lifetime without per-field rounding (ticks * ns_per_tick).
struct ThreadReport {
  uint32_t tid = 0;  // as the probe saw it: the target's own PID namespace
  // The same thread as the host sees it (`top -H`), when the target is in
  // another PID namespace; 0 when it ended before it was looked up.
  uint32_t host_tid = 0;
  std::string name;
  bool own = false;  // the probe's own thread
  uint32_t gil = 0;
  // What the thread was doing on this GIL when the probe armed: "holding"
  // or "waiting" (its time counts from the arm; the stretch began earlier),
  // "" when its time starts at its first event.
  std::string at_attach;
  double lifetime_ns = 0;  // first event .. last event (or window end if open)
  double held_ns = 0;
  double wait_total_ns = 0;
  double released_ns = 0;
  uint64_t acquisitions = 0;
  uint64_t forced_handoffs = 0;
  uint64_t drops = 0;  // ring-full drops of this thread's ring (all its rows)
  uint64_t anomalies = 0;
  DurationStats wait_ns;
  DurationStats hold_ns;
  DurationStats drop_latency_ns;  // as the holder asked to drop
  // The full distributions (ns), for drawing and export.
  Histogram wait_hist;
  Histogram hold_hist;
  // A row of this many exited threads of one group, folded into one by a
  // live view (tid 0, name: the group's key); 0 for a thread's own row.
  uint64_t exited_threads = 0;
};

// Threads of one kind on one GIL (report/groups.hpp): the sums of their
// rows, and how the members' held times spread.
struct GroupReport {
  std::string key;  // the members' name with each run of digits as "N"
  uint32_t gil = 0;
  bool own = false;             // gilstat's own thread
  std::vector<uint32_t> tids;   // members, in the order of Report::threads
  uint64_t exited_threads = 0;  // members that exited, folded (not in tids)
  double lifetime_ns = 0;       // Σ members' lifetimes
  double held_ns = 0;
  double wait_total_ns = 0;
  double released_ns = 0;
  uint64_t acquisitions = 0;
  uint64_t forced_handoffs = 0;
  uint64_t drops = 0;
  uint64_t anomalies = 0;
  // Of the members' held_ns (nearest-rank percentiles over the members).
  double member_held_p50_ns = 0;
  double member_held_p99_ns = 0;
  double member_held_max_ns = 0;
  // Every wait and hold of the members as one distribution: max, total and
  // count exact, percentiles from the merged histograms (a group of one
  // has its thread's stats).
  DurationStats wait_ns;
  DurationStats hold_ns;
  // Forced-switch requests the members received while holding, and the
  // longest of them (request -> release).
  uint64_t drop_latency_count = 0;
  uint64_t drop_latency_max_ns = 0;
  // Shown as one row by the text table (at least kMinGroupSize members).
  bool folded = false;
};

// Where a report's numbers come from, when it is read from a file.
struct RecordingStatus {
  bool from_file = false;
  uint32_t format_version = 0;
  std::string host;
  uint64_t start_unix_ns = 0;
  // Cut off (no end record): the numbers cover what was read.
  bool truncated = false;
  // TSC recordings convert with calibration pairs; false when a cut-off
  // file had too few of them (durations are then in ticks, as if 1 ns).
  bool calibrated = true;
  uint64_t corrupt_chunks = 0;
  uint64_t skipped_bytes = 0;
  std::vector<std::string> problems;
};

// A report over part of the recording (`report --since/--until`).
struct ReportWindow {
  bool partial = false;
  double since_s = 0;  // from the start of the recording's window
  double until_s = 0;  // == Report::duration_s when not partial
};

struct Report {
  std::string gilstat_version;
  int pid = 0;  // as the target sees itself
  // The pid the user typed and the host shows, when the target is in
  // another PID namespace (a container); 0 when it is in gilstat's own.
  int host_pid = 0;
  std::string command;
  double duration_s = 0;
  proto::ClockKind clock = proto::ClockKind::Monotonic;
  double ns_per_tick = 1.0;
  std::string python_version;
  uint32_t py_version_hex = 0;
  bool free_threaded = false;
  bool libpython_shared = false;
  uint64_t drops = 0;  // Σ ring-full drops + drops_no_ring
  uint64_t drops_no_ring = 0;
  // Events of threads past the aggregator's row limit (kDefaultMaxThreads):
  // left out of every figure.
  uint64_t untracked_events = 0;
  // Totals, acquisitions, switches and forced-switch counts are the
  // probe's own exact counts (a full ring loses events, never these); with
  // drops, only histograms, percentiles and timelines miss the lost events.
  bool totals_exact = false;
  RecordingStatus recording;
  ReportWindow window;
  std::vector<GilReport> gils;        // by id
  std::vector<ThreadReport> threads;  // by held time, descending
  std::vector<GroupReport> groups;    // every thread in one group; by held time
  GilProfile gil_profile;             // empty (no samples) unless stacks were sampled
  HogsReport hogs;                    // empty unless long holds had their stacks taken
  ModuleTable modules;                // per-module C API calls (report/modules.hpp)
};

}  // namespace gilstat::report

// The pipeline shared by the commands that consume a live probe (run,
// record, top, demo): drain the region into the aggregator and, optionally, a
// recording, with the probe's exact totals beside the events; at the end turn the region's header
// into the same metadata records a saved recording holds, so live and saved reports are computed by
// one path.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "common/pid_namespace.hpp"
#include "proto/recording.hpp"
#include "proto/ring_taker.hpp"
#include "proto/shm_region.hpp"
#include "report/aggregator.hpp"

namespace gilstat::proto {

class Capture {
 public:
  Capture(ShmRegion& region, RecordingWriter* writer);
  // The target's pid as gilstat sees it.  When the target is in another PID
  // namespace, its tids are mapped to the host's as they appear (and saved
  // in the recording), so reports show both.
  void set_host_pid(pid_t host_pid);
  // Live views that run for long (exporter, top): once a thread has ended
  // and its last events are drained, its rows are folded into one row of
  // exited threads per group (report::Aggregator::fold_exited), so memory
  // stays flat with a thread per request; sums stay exact.  A recording
  // still gets every thread's own events, names and totals.
  void set_fold_exited(bool fold) { fold_exited_ = fold; }
  // (thread, GIL) rows kept for threads not folded, and rows of exited
  // threads (one per group and GIL).
  size_t thread_rows() const { return aggregator_.thread_rows(); }
  size_t exited_rows() const { return aggregator_.exited_rows(); }
  // Names of threads read from outside the target (pyruntime) when
  // attaching: they do not need the probe to get the GIL.  A name the probe
  // has already given is kept; one it gives later replaces these (both come
  // from the same Thread._name, so they agree unless the program renamed
  // the thread in between).
  void add_outside_names(const std::vector<std::pair<pid_t, std::string>>& names);
  // A thread seen from outside holding (report::kArmHolds) or waiting for
  // (kArmWaits) GIL `gil` at the probe's arm, told by whoever checked that
  // it still did after the arm (cli/outside_names): its time counts from
  // the arm until its first event.
  void set_state_at_arm(uint32_t gil, uint32_t tid, uint8_t role);
  // Each drained event is also handed to `tap` (a live view's long holds).
  void set_event_tap(std::function<void(uint32_t tid, const Event&)> tap) { tap_ = std::move(tap); }
  // Drains events and picks up new thread names.  Returns events drained.
  // Throws RegionCorrupt when the region cannot be right: the caller
  // ends the session, and finish() still closes what was recorded.
  uint64_t poll();
  // Last drain, then the report; writes the metadata records to the
  // recording.  window_end is in raw clock units.  After a RegionCorrupt the
  // region is not read again: the metadata is the last seen before it.
  report::Report finish(uint64_t window_end, double ns_per_tick, const std::string& command);
  // The report so far, as if the window ended at `now` (live views).
  report::Report snapshot(uint64_t now, double ns_per_tick, const std::string& command) const;
  // From now on a thread of its own copies the rings out as fast as they
  // fill (RingTaker), so that no ring overflows while the caller is busy
  // between polls; poll() hands over what it copied.  Call it once the
  // target is running (the thread asks for nice -10, which a process
  // started afterwards would inherit).  finish() stops it.
  void start_taking();
  // How long the consumer may wait before the next poll().  Without a
  // RingTaker, paced by the rings' fill rate (FillPacer: 5 ms down to
  // 0.1 ms); with one, 5 ms, or 1 ms while polls find a lot to hand over.
  // The probe never waits for us: a full ring drops events (the totals stay
  // exact).
  std::chrono::microseconds pause() const;
  uint64_t events() const { return events_; }
  const ShmRegion& region() const { return region_; }
  uint64_t drops() const { return drops_; }
  // Events lost because every ring was in use (the last value read while the
  // region was sound).
  uint64_t drops_no_ring() const;

 private:
  void sync_names();
  void fold_ended();
  void sync_host_ids();
  void sync_recording_meta();
  void write_clock_sample();
  // The region's header as recording metadata (the last good one once the
  // region is corrupt).
  void describe(uint64_t window_end, const std::string& command, RecMeta* meta,
                std::vector<RecGil>* gils) const;
  // The totals of the threads still running, closed at window_end; *exact:
  // every thread's totals could be read (false once the region is corrupt).
  std::vector<report::ExactTotals> live_totals(uint64_t window_end, bool* exact) const;
  // The probe's module table into r (the last one read while the region
  // was sound).
  void attach_live_modules(report::Report& r) const;
  void describe_live(uint64_t window_end, const std::string& command, RecMeta* meta,
                     std::vector<RecGil>* gils) const;  // throws RegionCorrupt

  ShmRegion& region_;
  RecordingWriter* writer_;
  std::function<void(uint32_t, const Event&)> tap_;
  report::Aggregator aggregator_;
  std::map<uint32_t, std::string> names_;          // at most kDefaultMaxThreads
  std::set<uint32_t> drop_tids_;                   // threads with drops: the same bound
  std::optional<HostIds> host_ids_;                // set only for a namespaced target
  std::set<uint32_t> seen_tids_;                   // to map: tids of events and names
  std::map<uint32_t, uint32_t> written_host_ids_;  // saved in the recording
  uint32_t last_tid_ = 0;
  uint64_t events_ = 0;
  uint64_t drops_ = 0;
  int polls_ = 0;
  FillPacer pacer_;                     // the pause without a taker
  std::unique_ptr<RingTaker> taker_;    // reads region_ only: joined before it goes
  uint64_t last_poll_events_ = 0;
  bool fold_exited_ = false;
  static constexpr size_t kMaxDeferredFolds = 4096;
  std::vector<uint32_t> ended_;  // tids whose rings were freed this poll
  bool meta_written_ = false;
  std::map<uint32_t, RecGil> written_gils_;
  std::map<std::pair<uint32_t, uint32_t>, uint8_t> at_arm_;  // (gil, tid) -> role
  // The header as last read while the region was sound.
  mutable RecMeta last_meta_;
  mutable std::vector<RecGil> last_gils_;
  mutable uint64_t last_drops_no_ring_ = 0;
  mutable std::vector<RecModule> last_modules_;
  mutable uint64_t last_not_hooked_ = 0;
  mutable bool have_modules_ = false;
};

// Replays the metadata of a recording (live or saved) into a report.
report::Report build_report(const report::Aggregator& aggregator, const RecMeta& meta,
                            const std::vector<RecGil>& gils, const RecEnd& end,
                            std::span<const report::ExactTotals> live = {});

// One thread's totals as the probe kept them, the stretch still running
// closed at `end` (raw clock units).
report::ExactTotals close_totals(const TotalsSnapshot& s, uint64_t end);

}  // namespace gilstat::proto

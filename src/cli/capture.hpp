// The pipeline shared by the commands that consume a live probe (run, later
// record and top): drain the region into the aggregator and, optionally, a
// recording; at the end turn the region's header into the same metadata
// records a saved recording holds, so live and saved reports are computed
// by one path.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/pid_namespace.hpp"
#include "proto/recording.hpp"
#include "proto/shm_region.hpp"
#include "report/aggregator.hpp"

namespace gilstat::cli {

class Capture {
 public:
  Capture(proto::ShmRegion& region, proto::RecordingWriter* writer);
  // The target's pid as gilstat sees it.  When the target is in another PID
  // namespace, its tids are mapped to the host's as they appear (and saved
  // in the recording), so reports show both.
  void set_host_pid(pid_t host_pid);
  // Drains events and picks up new thread names.  Returns events drained.
  // Throws proto::RegionCorrupt when the region cannot be right: the caller
  // ends the session, and finish() still closes what was recorded.
  uint64_t poll();
  // Last drain, then the report; writes the metadata records to the
  // recording.  window_end is in raw clock units.  After a RegionCorrupt the
  // region is not read again: the metadata is the last seen before it.
  report::Report finish(uint64_t window_end, double ns_per_tick, const std::string& command);
  // The report so far, as if the window ended at `now` (live views).
  report::Report snapshot(uint64_t now, double ns_per_tick, const std::string& command) const;
  // Names of threads read from outside the target (pyruntime) when
  // attaching: they do not need the probe to get the GIL.  A name the probe
  // has already given is kept; one it gives later replaces these (both come
  // from the same Thread._name, so they agree unless the program renamed
  // the thread in between).
  void add_outside_names(const std::vector<std::pair<pid_t, std::string>>& names);
  uint64_t events() const { return events_; }
  uint64_t drops() const { return drops_; }
  // Events lost because every ring was in use (the last value read while the
  // region was sound).
  uint64_t drops_no_ring() const;

 private:
  void sync_names();
  void sync_host_ids();
  void sync_recording_meta();
  void write_clock_sample();
  // The region's header as recording metadata (the last good one once the
  // region is corrupt).
  void describe(uint64_t window_end, const std::string& command, proto::RecMeta* meta,
                std::vector<proto::RecGil>* gils) const;
  void describe_live(uint64_t window_end, const std::string& command, proto::RecMeta* meta,
                     std::vector<proto::RecGil>* gils) const;  // throws RegionCorrupt

  proto::ShmRegion& region_;
  proto::RecordingWriter* writer_;
  report::Aggregator aggregator_;
  std::map<uint32_t, std::string> names_;  // at most kDefaultMaxThreads
  std::set<uint32_t> drop_tids_;           // threads with drops: the same bound
  std::optional<HostIds> host_ids_;        // set only for a namespaced target
  std::set<uint32_t> seen_tids_;           // to map: tids of events and names
  std::map<uint32_t, uint32_t> written_host_ids_;  // saved in the recording
  uint32_t last_tid_ = 0;
  uint64_t events_ = 0;
  uint64_t drops_ = 0;
  int polls_ = 0;
  bool meta_written_ = false;
  std::map<uint32_t, proto::RecGil> written_gils_;
  // The header as last read while the region was sound.
  mutable proto::RecMeta last_meta_;
  mutable std::vector<proto::RecGil> last_gils_;
  mutable uint64_t last_drops_no_ring_ = 0;
};

// Replays the metadata of a recording (live or saved) into a report.
report::Report build_report(const report::Aggregator& aggregator, const proto::RecMeta& meta,
                            const std::vector<proto::RecGil>& gils, const proto::RecEnd& end);

}  // namespace gilstat::cli

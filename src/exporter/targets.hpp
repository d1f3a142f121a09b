// The exporter's targets: the processes given by --pid and those whose
// command line matches --match (rescanned every kScanInterval), each attached
// as `record --pid` does and drained continuously (with its heartbeat).
// Attaching runs on a worker thread, one target at a time, so that a slow or
// stuck attach never stops the drain loop (a probe unhooks itself when the
// heartbeat stops for a second).  A target that cannot be attached is
// reported once on stderr, exposed as down, and retried with back-off; one
// that exits is dropped; one whose region turns out corrupt is detached and
// kept as down (not retried) until it exits.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <regex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "cli/attach_session.hpp"
#include "exporter/groups.hpp"
#include "report/prometheus.hpp"

namespace gilstat {
class ClockCalibration;
}

namespace gilstat::exporter {

inline constexpr uint64_t kScanIntervalNs = 2'000'000'000;
inline constexpr uint64_t kFirstRetryNs = 5'000'000'000;
inline constexpr uint64_t kMaxRetryNs = 300'000'000'000;

struct WatchOptions {
  std::vector<int> pids;
  std::optional<std::regex> match;
  std::string match_text;
  size_t max_groups = 20;
  bool command_label = true;
  cli::AttachMethod method = cli::AttachMethod::kPtrace;
};

// The HTTP side of the exporter's own figures.
struct SelfStats {
  uint64_t scrapes = 0;
  double last_scrape_s = 0;  // wall time
  double last_scrape_cpu_s =
      0;  // CPU time of the exporter's thread (a loaded host stretches the wall time)
};

class TargetRegistry {
 public:
  explicit TargetRegistry(WatchOptions options);
  ~TargetRegistry();  // detaches from every target
  TargetRegistry(const TargetRegistry&) = delete;
  TargetRegistry& operator=(const TargetRegistry&) = delete;

  // One round: drains every attached target and beats its heartbeat, drops
  // targets that exited, collects a finished attach, starts the next one due,
  // and rescans the processes when a scan is due.
  void tick();
  // Every series, for a scrape.
  void render(report::ExpositionFormat format, std::ostream& out, const SelfStats& self);
  // The `/` page's lines: one per target.
  std::vector<std::string> describe() const;
  // Unhooks the probe of every target (in parallel, ≤ ~1 s) and forgets them.
  void detach_all();

 private:
  struct Target;
  struct AttachJob;
  void scan();
  void add(pid_t pid, uint64_t start_time);
  void drain(Target& t);
  void finish_attach();
  void start_attach(uint64_t now);
  void fail(Target& t, const std::string& message, bool retry);

  WatchOptions options_;
  std::map<pid_t, std::unique_ptr<Target>> targets_;
  std::map<pid_t, uint64_t> ignored_;  // matching processes that are not CPython (start time)
  std::unique_ptr<AttachJob> job_;
  // Sessions being stopped off the drain loop: a stop waits up to a second
  // for a probe whose region may be garbage, and the other targets' heartbeats
  // must not wait with it.
  std::vector<std::thread> retiring_;
  uint64_t next_scan_ns_ = 0;
  struct Totals {
    uint64_t events = 0;  // drained from every target since start
    uint64_t drops = 0;   // also of targets no longer watched
    uint64_t attach_failures = 0;
    double events_per_s = 0;  // over the last second or so
  };
  Totals totals_;
  uint64_t rate_events_ = 0, rate_at_ns_ = 0;
};

}  // namespace gilstat::exporter

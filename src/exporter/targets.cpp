#include "exporter/targets.hpp"

#include <dirent.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <iostream>

#include "cli/capture.hpp"
#include "common/clock.hpp"
#include "common/error.hpp"
#include "common/procfs.hpp"
#include "proto/shm_region.hpp"

namespace gilstat::exporter {
namespace {

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Field 22 of /proc/PID/stat (start time in clock ticks): with the pid, it
// names one process (pids are reused).  0 when the process is gone.
uint64_t start_time(pid_t pid) {
  const auto stat = procfs::read(pid, "stat");
  if (!stat) return 0;
  const size_t paren = stat->rfind(')');  // the name may hold spaces and ')'
  if (paren == std::string::npos) return 0;
  size_t pos = paren + 2;  // field 3
  for (int field = 3; field < 22; ++field) {
    pos = stat->find(' ', pos);
    if (pos == std::string::npos) return 0;
    ++pos;
  }
  return std::strtoull(stat->c_str() + pos, nullptr, 10);
}

// A CPython process, as far as /proc tells without attaching: a mapped
// python executable or libpython (the executable may be a loader that runs
// python, as with an explicitly invoked ld.so).  The attach's pre-flight
// decides for good.
bool looks_like_python(pid_t pid) {
  const auto maps = procfs::read(pid, "maps");
  if (!maps) return false;
  std::string_view rest(*maps);
  while (!rest.empty()) {
    const size_t eol = rest.find('\n');
    const std::string_view line = rest.substr(0, eol);
    rest = eol == std::string_view::npos ? std::string_view() : rest.substr(eol + 1);
    const size_t slash = line.rfind('/');
    if (slash == std::string_view::npos) continue;
    const std::string_view base = line.substr(slash + 1);
    if (base.starts_with("python") || base.starts_with("libpython")) return true;
  }
  return false;
}

std::string one_line(std::string text) {
  for (char& c : text)
    if (c == '\n' || c == '\r') c = ' ';
  return text;
}

}  // namespace

struct TargetRegistry::Target {
  pid_t pid = 0;
  uint64_t start_time = 0;
  std::string cmdline;
  std::string command;  // the label, empty with --no-command-label
  std::unique_ptr<cli::AttachSession> session;
  std::unique_ptr<cli::Capture> capture;
  std::unique_ptr<ClockCalibration> calibration;
  std::unique_ptr<GroupSelection> groups;
  std::unordered_map<std::string, double> floor;
  double created = 0;  // unix seconds of the attach
  std::string error;   // why it is down
  bool reported = false;
  bool retry = true;
  int failures = 0;
  uint64_t retry_at_ns = 0;
  uint64_t drops_seen = 0;
  bool gone = false;  // exited: dropped at the end of the round
};

struct TargetRegistry::AttachJob {
  pid_t pid = 0;
  std::thread thread;
  std::atomic<bool> done{false};
  std::unique_ptr<cli::AttachSession> session;
  std::string error;
};

TargetRegistry::TargetRegistry(WatchOptions options) : options_(std::move(options)) {
  for (int pid : options_.pids) {
    const uint64_t start = start_time(pid);
    if (start == 0)
      throw Error(fmt::format("no process {}", pid), "check the pid (ps -C python3 -o pid,args)");
    if (!targets_.count(pid)) add(pid, start);
  }
  rate_at_ns_ = monotonic_ns();
}

TargetRegistry::~TargetRegistry() { detach_all(); }

void TargetRegistry::add(pid_t pid, uint64_t start) {
  auto t = std::make_unique<Target>();
  t->pid = pid;
  t->start_time = start;
  t->cmdline = procfs::cmdline(pid);
  if (options_.command_label) t->command = report::command_label(t->cmdline);
  targets_[pid] = std::move(t);
}

void TargetRegistry::fail(Target& t, const std::string& message, bool retry) {
  const uint64_t backoff =
      std::min<uint64_t>(kFirstRetryNs << std::min(t.failures, 8), kMaxRetryNs);
  t.error = one_line(message);
  t.retry = retry;
  t.retry_at_ns = monotonic_ns() + backoff;
  ++t.failures;
  if (!t.reported) {
    std::cerr << fmt::format(
        "gilstat: exporter: process {} ({}): {}; {}\n", t.pid, one_line(t.cmdline.substr(0, 80)),
        t.error,
        retry ? "exposed as down, retrying with back-off" : "exposed as down until it exits");
    t.reported = true;
  }
}

void TargetRegistry::drain(Target& t) {
  try {
    totals_.events += t.capture->poll();
  } catch (const std::exception& e) {
    // A corrupt region: this target only is detached.
    t.capture.reset();
    retiring_.emplace_back([session = std::move(t.session)]() mutable { session.reset(); });
    fail(t, fmt::format("detached: {}", e.what()), false);
    return;
  }
  const uint64_t drops = t.capture->drops() + t.capture->drops_no_ring();
  totals_.drops += drops - std::min(drops, t.drops_seen);
  t.drops_seen = drops;
  t.session->region().beat();
  if (t.session->target_exited()) t.gone = true;
}

void TargetRegistry::finish_attach() {
  if (!job_ || !job_->done.load()) return;
  job_->thread.join();
  std::unique_ptr<AttachJob> job = std::move(job_);
  auto it = targets_.find(job->pid);
  if (it == targets_.end()) return;  // gone meanwhile: the session detaches
  Target& t = *it->second;
  if (!job->session) {
    ++totals_.attach_failures;
    fail(t, job->error, true);
    return;
  }
  t.session = std::move(job->session);
  t.capture = std::make_unique<cli::Capture>(t.session->region(), nullptr);
  t.capture->set_host_pid(job->pid);
  t.capture->set_fold_exited(true);  // a thread per request must not grow the exporter
  t.calibration = std::make_unique<ClockCalibration>(t.session->clock());
  t.groups = std::make_unique<GroupSelection>(options_.max_groups);
  t.floor.clear();
  t.created = unix_now();
  t.error.clear();
  t.failures = 0;
  t.drops_seen = 0;
}

void TargetRegistry::start_attach(uint64_t now) {
  if (job_) return;
  for (auto& [pid, t] : targets_) {
    if (t->session || t->gone || !t->retry || t->retry_at_ns > now) continue;
    job_ = std::make_unique<AttachJob>();
    job_->pid = pid;
    AttachJob* job = job_.get();
    const cli::AttachMethod method = options_.method;
    job_->thread = std::thread([job, method] {
      try {
        job->session = std::make_unique<cli::AttachSession>(job->pid, method);
      } catch (const std::exception& e) {
        job->error = e.what();
      }
      job->done.store(true);
    });
    return;
  }
}

void TargetRegistry::scan() {
  for (auto& [pid, t] : targets_)
    if (start_time(pid) != t->start_time) t->gone = true;
  std::erase_if(ignored_, [](const auto& e) { return start_time(e.first) != e.second; });
  if (!options_.match) return;
  DIR* proc = opendir("/proc");
  if (!proc) return;
  const pid_t self = getpid();
  while (const dirent* entry = readdir(proc)) {
    if (!std::isdigit(static_cast<unsigned char>(entry->d_name[0]))) continue;
    const auto pid = static_cast<pid_t>(std::strtol(entry->d_name, nullptr, 10));
    if (pid == self || targets_.count(pid) || ignored_.count(pid)) continue;
    const uint64_t start = start_time(pid);
    if (start == 0) continue;
    const std::string cmdline = procfs::cmdline(pid);
    if (cmdline.empty() || !std::regex_search(cmdline, *options_.match)) continue;
    if (!looks_like_python(pid)) {
      ignored_[pid] = start;
      continue;
    }
    add(pid, start);
  }
  closedir(proc);
}

void TargetRegistry::tick() {
  const uint64_t now = monotonic_ns();
  for (auto& [pid, t] : targets_)
    if (t->session) drain(*t);
  finish_attach();
  if (now >= next_scan_ns_) {
    scan();
    next_scan_ns_ = now + kScanIntervalNs;
  }
  // Exited targets go with their series (a down one stays until then).
  for (auto it = targets_.begin(); it != targets_.end();) {
    if (!it->second->gone) {
      ++it;
      continue;
    }
    if (it->second->session)
      std::cerr << fmt::format("gilstat: exporter: process {} exited\n", it->first);
    it = targets_.erase(it);
  }
  start_attach(now);
  if (now - rate_at_ns_ >= 1'000'000'000) {
    totals_.events_per_s = static_cast<double>(totals_.events - rate_events_) /
                           (static_cast<double>(now - rate_at_ns_) / 1e9);
    rate_events_ = totals_.events;
    rate_at_ns_ = now;
  }
}

void TargetRegistry::render(report::ExpositionFormat format, std::ostream& out,
                            const SelfStats& self) {
  const double now_unix = unix_now();
  // A fresh snapshot of every attached target.
  struct Live {
    Target* target;
    report::Report report;
    std::vector<GroupRow> rows;
    report::Labels labels;
  };
  std::vector<Live> live;
  for (auto& [pid, t] : targets_) {
    if (!t->session) continue;
    drain(*t);
    if (!t->session || t->gone) continue;
    t->calibration->sample();
    Live l{t.get(), {}, {}, report::process_labels(pid, t->command)};
    l.report = t->capture->snapshot(read_clock(t->session->clock()), t->calibration->ns_per_tick(),
                                    t->cmdline);
    l.rows = t->groups->rows(l.report.groups, now_unix);
    live.push_back(std::move(l));
  }
  const auto with = [](report::Labels ls, const char* name, std::string value) {
    ls.push_back({name, std::move(value)});
    return ls;
  };
  report::Exposition e(out, format);
  e.family("gilstat_target_up", "gauge",
           "1 while the target is attached and measured; 0 when it cannot be (see the / page).",
           [&] {
             for (const auto& [pid, t] : targets_)
               if (!t->gone) e.sample(report::process_labels(pid, t->command), t->session ? 1 : 0);
           });
  e.family("gilstat_target_python", "gauge", "1, with the attached target's CPython version.", [&] {
    for (const Live& l : live) e.sample(with(l.labels, "python", l.report.python_version), 1);
  });
  e.family("gilstat_events_dropped_total", "counter",
           "Probe events lost (full ring or no free ring): the other figures undercount.", [&] {
             for (const Live& l : live) {
               e.set_floor(&l.target->floor);
               e.counter(l.labels, static_cast<double>(l.report.drops), l.target->created);
             }
           });
  for (const report::GilFamily& f : report::gil_families()) {
    if (!f.live) continue;
    e.family(f.name, f.type, f.help, [&] {
      for (const Live& l : live) {
        e.set_floor(&l.target->floor);
        for (const report::GilReport& g : l.report.gils) {
          const report::Labels ls = with(l.labels, "gil", fmt::format("{}", g.id));
          if (f.hist)
            e.histogram(ls, g.*f.hist, l.target->created);
          else if (std::string_view(f.type) == "counter")
            e.counter(ls, f.value(g), l.target->created);
          else
            e.sample(ls, f.value(g));
        }
      }
    });
  }
  for (const report::ThreadFamily& f : report::thread_families()) {
    e.family(f.name, "counter", f.help, [&] {
      for (const Live& l : live) {
        e.set_floor(&l.target->floor);
        for (const GroupRow& row : l.rows)
          e.counter(with(with(l.labels, "gil", fmt::format("{}", row.gil)), "group", row.group),
                    f.value(row.sums), row.created);
      }
    });
  }
  e.set_floor(nullptr);
  const report::Labels none;
  e.family("gilstat_exporter_targets", "gauge", "Targets watched, by state.", [&] {
    size_t up = 0, down = 0;
    for (const auto& [pid, t] : targets_) (t->session ? up : down) += t->gone ? 0 : 1;
    e.sample({{"state", "up"}}, static_cast<double>(up));
    e.sample({{"state", "down"}}, static_cast<double>(down));
  });
  e.family("gilstat_exporter_thread_rows", "gauge",
           "Per-thread state kept for the attached targets: rows of threads alive "
           "(kind=\"threads\") and of exited threads folded by group (kind=\"exited_groups\").",
           [&] {
             size_t threads = 0, exited = 0;
             for (const auto& [pid, t] : targets_) {
               if (!t->capture) continue;
               threads += t->capture->thread_rows();
               exited += t->capture->exited_rows();
             }
             e.sample({{"kind", "threads"}}, static_cast<double>(threads));
             e.sample({{"kind", "exited_groups"}}, static_cast<double>(exited));
           });
  e.family("gilstat_exporter_scrape_duration_seconds", "gauge",
           "Time the previous scrape took to prepare.",
           [&] { e.sample(none, self.last_scrape_s); });
  e.family("gilstat_exporter_scrape_cpu_seconds", "gauge",
           "CPU time the previous scrape took to prepare.",
           [&] { e.sample(none, self.last_scrape_cpu_s); });
  e.family("gilstat_exporter_scrapes_total", "counter", "Scrapes served.",
           [&] { e.counter(none, static_cast<double>(self.scrapes), 0); });
  e.family("gilstat_exporter_events_total", "counter", "Probe events drained from every target.",
           [&] { e.counter(none, static_cast<double>(totals_.events), 0); });
  e.family("gilstat_exporter_events_per_second", "gauge",
           "Probe events drained per second over the last second.",
           [&] { e.sample(none, totals_.events_per_s); });
  e.family("gilstat_exporter_events_dropped_total", "counter",
           "Probe events lost in every target, also those no longer watched.",
           [&] { e.counter(none, static_cast<double>(totals_.drops), 0); });
  e.family("gilstat_exporter_attach_failures_total", "counter",
           "Attaches that failed (each retry counts).",
           [&] { e.counter(none, static_cast<double>(totals_.attach_failures), 0); });
  e.end();
}

std::vector<std::string> TargetRegistry::describe() const {
  std::vector<std::string> lines;
  for (const auto& [pid, t] : targets_) {
    const std::string state =
        t->session ? "up" : (t->error.empty() ? "attaching" : "down: " + t->error);
    lines.push_back(
        fmt::format("{:>8}  {}  [{}]", pid, one_line(t->cmdline.substr(0, 120)), state));
  }
  return lines;
}

void TargetRegistry::detach_all() {
  if (job_) {
    job_->thread.join();  // an attach finishes (or fails) within its own timeouts
    job_.reset();         // a session it made detaches here
  }
  // Each stop waits for the probe to confirm its GOT slots are restored: in
  // parallel, so that many targets still take about a second at most.
  std::vector<std::thread> stops;
  for (auto& [pid, t] : targets_) {
    if (!t->session) continue;
    t->capture.reset();
    stops.emplace_back([session = t->session.get()] { session->stop(); });
  }
  for (std::thread& s : stops) s.join();
  for (std::thread& r : retiring_) r.join();
  retiring_.clear();
  targets_.clear();
}

}  // namespace gilstat::exporter

// gilstat top --pid PID [--interval S] [--duration S] [--sort held|wait|acq]
//             [--max-threads N|all] [--json] [--method ptrace|remote-exec|auto]
//             [--profile-rate HZ] [--hog-threshold MS]
//
// Live view of a running process: per GIL and per thread, over the last
// interval and since attach (the view itself: top_view.hpp), the long holds
// running now and the functions that held the GIL in the interval
// (top_stacks.hpp; stacks taken as `record --pid` takes them).  Full-screen
// on a terminal, fitted to its size, with keys to sort, fold groups and
// quit (terminal.hpp); one plain block per interval when stdout is not a
// terminal; one JSON object per interval with --json.
#include <fmt/core.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <sstream>
#include <unordered_set>

#include "cli/attach_session.hpp"
#include "cli/capture.hpp"
#include "cli/commands.hpp"
#include "cli/live_stacks.hpp"
#include "cli/outside_names.hpp"
#include "cli/table_options.hpp"
#include "cli/terminal.hpp"
#include "cli/top_stacks.hpp"
#include "cli/top_view.hpp"
#include "common/clock.hpp"
#include "common/error.hpp"
#include "common/poll_wait.hpp"
#include "common/procfs.hpp"
#include "report/modules.hpp"
#include "report/render_json.hpp"
#include "report/render_profile.hpp"

namespace gilstat::cli {
namespace {

struct TopOptions {
  int pid = 0;
  double interval = 1.0;
  double duration = 0;
  std::string sort = "held";
  MaxThreadsOption max_threads;  // empty: fit the screen, or kPlainMaxThreads
  bool json = false;
  std::string method;  // --method
  StackOptions stacks;
};

// The functions of the interval's profile shown under the threads.
constexpr size_t kTopFunctions = 5;

// Rows per snapshot when stdout is not a terminal, unless --max-threads says.
constexpr size_t kPlainMaxThreads = 20;

// Rows to show: what fits the screen (0) or kPlainMaxThreads unless
// --max-threads says (0 also for "all").
size_t rows_to_show(const MaxThreadsOption& option, bool screen) {
  if (option.text.empty()) return screen ? 0 : kPlainMaxThreads;
  return parse_max_threads(option);
}

// Which threads of `now` still run: /proc/PID/task lists them.  Threads
// gone at the previous snapshot stay ExitedBefore.  Empty (all alive) when
// the list cannot be read.
std::unordered_map<uint32_t, ThreadFate> thread_fates(int pid, const report::Report& now,
                                                      std::unordered_set<uint32_t>& gone) {
  std::unordered_map<uint32_t, ThreadFate> fates;
  const std::vector<pid_t> tids = procfs::task_ids(pid);
  if (tids.empty()) return fates;
  const std::unordered_set<uint32_t> alive(tids.begin(), tids.end());
  std::vector<uint32_t> newly_gone;
  for (const auto& t : now.threads) {
    // /proc lists the host's tids (0: ended before it could be mapped).
    if (alive.contains(now.host_pid ? t.host_tid : t.tid)) continue;
    if (gone.contains(t.tid)) {
      fates[t.tid] = ThreadFate::ExitedBefore;
    } else {
      fates[t.tid] = ThreadFate::ExitedInInterval;
      newly_gone.push_back(t.tid);
    }
  }
  gone.insert(newly_gone.begin(), newly_gone.end());
  return fates;
}

// "holding" / "waiting" when the thread's time counts from the arm, else null.
std::string at_attach_json(const report::ThreadReport& t) {
  return t.at_attach.empty() ? "null" : report::json_string(t.at_attach);
}

// The interval's threads with their held time of the interval only: the interval's
// samples are weighted by it.
report::Report interval_report(const std::vector<ThreadDelta>& deltas) {
  report::Report r;
  for (const ThreadDelta& d : deltas) {
    r.threads.push_back(*d.now);
    r.threads.back().held_ns = d.held_ns;
  }
  return r;
}

// The long holds of the hog watcher's last tick, for the view.
std::vector<TopLongHold> long_holds(const HogWatcher& hogs, const report::Report& now,
                                    uint64_t now_raw, double ns_per_tick) {
  std::vector<TopLongHold> out;
  for (const HogWatcher::LongHold& h : hogs.current()) {
    TopLongHold t;
    t.tid = h.tid;
    t.gil = h.gil;
    for (const auto& th : now.threads)
      if (th.tid == h.tid && th.gil == h.gil) t.thread = th.name;
    t.for_ns = now_raw > h.since ? static_cast<double>(now_raw - h.since) * ns_per_tick : 0;
    t.stack_taken = !h.stack.empty();
    t.python = innermost_python(h.stack);
    t.native = innermost_native(h.stack);
    out.push_back(std::move(t));
  }
  return out;
}

std::string render_interval_json(const report::Report& now, const std::vector<GilDelta>& gils,
                                 const std::vector<ThreadDelta>& threads,
                                 const std::unordered_map<uint32_t, ThreadFate>& fates,
                                 double interval_s, const std::vector<TopLongHold>& holds,
                                 const report::GilProfile& interval_profile) {
  std::ostringstream out;
  out << fmt::format(
      "{{\"pid\": {}, \"host_pid\": {}, \"elapsed_s\": {:.6f}, \"interval_s\": {:.6f}, "
      "\"gils\": [",
      now.pid, now.host_pid ? now.host_pid : now.pid, now.duration_s, interval_s);
  for (size_t i = 0; i < gils.size(); ++i) {
    const auto& g = gils[i];
    out << fmt::format(
        "{}{{\"id\": {}, \"utilization\": {:.6f}, \"acquisitions\": {}, \"switches\": {}, "
        "\"forced_switch_requests\": {}, \"holder_tid\": {}, \"holder_for_s\": {:.9f}, "
        "\"holder_since_attach\": {}, \"waiting_now\": {}}}",
        i ? ", " : "", g.now->id, g.hold_ns / (interval_s * 1e9), g.acquisitions, g.switches,
        g.requests, g.now->holder_tid, g.now->holder_for_ns / 1e9, g.now->holder_since_attach,
        g.now->waiting_now);
  }
  out << "], \"threads\": [";
  bool first = true;
  for (const ThreadDelta& t : threads) {
    if (!shown_in_interval(t, fates)) continue;
    out << fmt::format(
        "{}{{\"tid\": {}, \"host_tid\": {}, \"name\": {}, \"own\": {}, \"gil\": {}, "
        "\"held_s\": {:.9f}, \"wait_s\": {:.9f}, \"acquisitions\": {}, \"at_attach\": {}, "
        "\"exited\": {}}}",
        first ? "" : ", ", t.now->tid,
        !now.host_pid     ? std::to_string(t.now->tid)
        : t.now->host_tid ? std::to_string(t.now->host_tid)
                          : "null",
        report::json_string(t.now->name), t.now->own, t.now->gil, t.held_ns / 1e9, t.wait_ns / 1e9,
        t.acquisitions, at_attach_json(*t.now), fate_of(t, fates) != ThreadFate::Alive);
    first = false;
  }
  std::ostringstream total;
  report::render_json(now, total);
  std::string since = total.str();
  // One object per line (JSON Lines): the report's own line breaks go; its
  // strings are escaped, so no break is inside a string.
  for (char& c : since)
    if (c == '\n') c = ' ';
  while (!since.empty() && since.back() == ' ') since.pop_back();
  report::Report profiled;
  profiled.gil_profile = interval_profile;
  out << "], \"long_holds\": " << long_holds_json(holds)
      << ", \"gil_profile\": " << report::profile_json(profiled) << ", \"since_attach\": " << since
      << "}\n";
  return out.str();
}

// Applies the keys of the full-screen view; false when one of them quits.
bool apply_keys(const std::string& keys, TopViewOptions& view) {
  for (char c : keys) {
    switch (c) {
      case 'q':
      case 'Q':
        return false;
      case 'h':
        view.sort = TopSort::Held;
        break;
      case 'w':
        view.sort = TopSort::Wait;
        break;
      case 'a':
        view.sort = TopSort::Acquisitions;
        break;
      case 'g':
        view.groups = !view.groups;
        break;
      default:
        break;
    }
  }
  return true;
}

int top(const TopOptions& opts) {
  opts.stacks.hog_threshold_ns();  // a bad --hog-threshold is a usage error before attaching
  if (opts.interval <= 0)
    throw Error("--interval must be positive", "e.g. --interval 0.5", kExitUsage);
  TopViewOptions view;
  if (!parse_top_sort(opts.sort, view.sort))
    throw Error(fmt::format("--sort must be held, wait or acq, not '{}'", opts.sort),
                "held: time holding the GIL, wait: time waiting for it, acq: acquisitions",
                kExitUsage);
  const bool screen = !opts.json && isatty(STDOUT_FILENO);
  view.max_threads = rows_to_show(opts.max_threads, screen);
  view.key_help = screen;
  install_stop_signals();
  AttachSession session(opts.pid, parse_attach_method(opts.method));
  ClockCalibration calibration(session.clock());
  Capture capture(session.region(), nullptr);
  prefer_draining_thread();
  capture.start_taking();
  capture.set_host_pid(opts.pid);
  name_threads_from_outside(session.target(), capture);
  ProfileSampler profile(session.target(), session.clock(), opts.stacks.profile_rate);
  HogWatcher hogs(session.target(), session.clock(), opts.stacks.hog_threshold_ns());
  capture.set_event_tap(
      [&](uint32_t tid, const proto::Event& ev) { profile.count_events(tid, ev); });
  Terminal terminal(screen);
  const uint64_t started = monotonic_ns();
  uint64_t next = started + static_cast<uint64_t>(opts.interval * 1e9);
  // The last two snapshots and the fates of the later one's threads: a key
  // or a resize redraws them at once.
  report::Report prev, now;
  TopInterval frame{&prev, &now, 0, {}, {}};
  std::unordered_set<uint32_t> gone;
  bool exited = false, quit = false, drawn = false;
  auto draw = [&] {
    view.width = terminal.width();
    view.height = terminal.height();
    terminal.draw(render_top(frame, view));
  };
  if (screen)
    terminal.draw(
        {fmt::format("gilstat top · pid {} · attached; the first interval ends in {:.2f} s",
                     opts.pid, opts.interval)});
  while (!stop_requested() && !quit) {
    capture.poll();
    session.region().beat();
    profile.flush(session.region(), nullptr);
    hogs.tick(session.region(), profile, nullptr);
    const std::string keys = terminal.keys();
    quit = !apply_keys(keys, view);
    if (screen && drawn && !quit && (terminal.resized() || !keys.empty())) draw();
    exited = session.target_exited(capture.pause());
    const uint64_t now_ns = monotonic_ns();
    const bool done = exited || stop_requested() ||
                      (opts.duration > 0 && now_ns - started >= opts.duration * 1e9);
    if (quit) break;  // nothing more to show
    if (now_ns < next && !done) continue;
    // Behind (a starved CLI): the next interval is a whole one, not a catch-up sliver.
    const auto step = static_cast<uint64_t>(opts.interval * 1e9);
    next = std::max(next + step, now_ns + step / 2);
    calibration.sample();
    capture.poll();
    const uint64_t now_raw = read_clock(session.clock());
    report::Report latest = capture.snapshot(now_raw, calibration.ns_per_tick(), session.command());
    prev = std::move(now);
    now = std::move(latest);
    now.gil_profile = profile.gil_profile(now);
    report::attach_hogs(now, profile.hogs(now, now_raw));
    const std::vector<ThreadDelta> deltas = thread_deltas(prev, now);
    const report::GilProfile interval_profile =
        profile.take_interval_profile(interval_report(deltas));
    const std::vector<TopLongHold> holds =
        long_holds(hogs, now, now_raw, calibration.ns_per_tick());
    // The window between the two reports' ends: the first one's starts when
    // the probe armed, a little before `started`.
    frame.interval_s = now.duration_s - prev.duration_s;
    frame.fates = thread_fates(opts.pid, now, gone);
    frame.stack_lines = top_stack_lines(holds, interval_profile, frame.interval_s, kTopFunctions);
    if (opts.json) {
      std::cout << render_interval_json(now, gil_deltas(prev, now), deltas, frame.fates,
                                        frame.interval_s, holds, interval_profile)
                << std::flush;
    } else if (screen) {
      draw();
      drawn = true;
    } else {
      for (const auto& line : render_top(frame, view)) std::cout << line << "\n";
      std::cout << "\n" << std::flush;
    }
    if (done) break;
  }
  if (exited) std::cerr << fmt::format("gilstat: process {} exited\n", opts.pid);
  return kExitOk;
}

}  // namespace

void add_top_command(CLI::App& app, Action& action) {
  auto opts = std::make_shared<TopOptions>();
  CLI::App* cmd = app.add_subcommand("top", "Live view of who holds and waits for the GIL");
  cmd->add_option("-p,--pid", opts->pid, "CPython process to attach to")->required();
  cmd->add_option("-i,--interval", opts->interval, "Refresh interval in seconds (default 1)");
  cmd->add_option("-d,--duration", opts->duration, "Stop after S seconds");
  cmd->add_option("-s,--sort", opts->sort, "Sort threads by held, wait or acq (default held)");
  cmd->add_option("--max-threads", opts->max_threads.text,
                  "Rows before '… N more threads': N or all (default: what fits the terminal; "
                  "20 when stdout is not one)");
  cmd->add_flag("--json", opts->json, "One JSON object per interval on stdout");
  add_method_option(*cmd, opts->method);
  add_stack_options(*cmd, opts->stacks);
  cmd->callback([opts, &action] { action = [opts] { return top(*opts); }; });
}

}  // namespace gilstat::cli

// gilstat top --pid PID [--interval S] [--duration S] [--sort held|wait|acq] [--json]
//             [--method ptrace|remote-exec|auto]
//
// Live view of a running process: per GIL and per thread, over the last
// interval and since attach.  Interval figures are differences of two
// cumulative reports (each closes open holds/waits at its own "now"), so
// they add up exactly.  Full-screen on a terminal (q quits); plain blocks
// when stdout is not a terminal; one JSON object per interval with --json.
#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <poll.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>

#include "cli/attach_session.hpp"
#include "cli/capture.hpp"
#include "cli/commands.hpp"
#include "common/clock.hpp"
#include "common/error.hpp"
#include "report/render_json.hpp"
#include "report/render_text.hpp"

namespace gilstat::cli {
namespace {

struct TopOptions {
  int pid = 0;
  double interval = 1.0;
  double duration = 0;
  std::string sort = "held";
  bool json = false;
  std::string method;  // --method
};

// One thread's figures over the last interval.
struct ThreadDelta {
  const report::ThreadReport* now;
  double held_ns, wait_ns, span_ns;
  uint64_t acquisitions;
};

struct GilDelta {
  const report::GilReport* now;
  double hold_ns;
  uint64_t acquisitions, switches, requests;
};

uint64_t key(const report::ThreadReport& t) { return uint64_t{t.tid} << 8 | t.gil; }

std::vector<ThreadDelta> thread_deltas(const report::Report& prev, const report::Report& now,
                                       double interval_ns) {
  std::map<uint64_t, const report::ThreadReport*> before;
  for (const auto& t : prev.threads) before[key(t)] = &t;
  std::vector<ThreadDelta> out;
  for (const auto& t : now.threads) {
    const auto it = before.find(key(t));
    const report::ThreadReport* p = it == before.end() ? nullptr : it->second;
    out.push_back({&t, t.held_ns - (p ? p->held_ns : 0),
                   t.wait_total_ns - (p ? p->wait_total_ns : 0),
                   std::min(interval_ns, t.lifetime_ns - (p ? p->lifetime_ns : 0)),
                   t.acquisitions - (p ? p->acquisitions : 0)});
  }
  return out;
}

std::vector<GilDelta> gil_deltas(const report::Report& prev, const report::Report& now) {
  std::vector<GilDelta> out;
  for (const auto& g : now.gils) {
    const report::GilReport* p = nullptr;
    for (const auto& q : prev.gils)
      if (q.id == g.id) p = &q;
    out.push_back({&g, double(g.hold_ns.total) - (p ? double(p->hold_ns.total) : 0),
                   g.acquisitions - (p ? p->acquisitions : 0), g.switches - (p ? p->switches : 0),
                   g.forced_switch_requests - (p ? p->forced_switch_requests : 0)});
  }
  return out;
}

void sort_threads(std::vector<ThreadDelta>& rows, const std::string& by) {
  std::stable_sort(rows.begin(), rows.end(), [&](const ThreadDelta& a, const ThreadDelta& b) {
    if (by == "wait") return a.wait_ns > b.wait_ns;
    if (by == "acq") return a.acquisitions > b.acquisitions;
    return a.held_ns > b.held_ns;
  });
}

double pct(double part, double whole) { return whole > 0 ? 100.0 * part / whole : 0.0; }

std::string render_table(const report::Report& now, const std::vector<GilDelta>& gils,
                         std::vector<ThreadDelta> threads, const TopOptions& opts,
                         double interval_s, size_t max_rows) {
  std::ostringstream out;
  out << fmt::format("gilstat top · pid {} · Python {} · {:.1f} s since attach · drops {}\n",
                     now.pid, now.python_version, now.duration_s, now.drops);
  for (const auto& g : gils) {
    out << fmt::format(
        "GIL {}  util {:5.1f} % (total {:5.1f} %)  switches/s {:7.0f}  forced-switch req/s {:6.0f}"
        "  hand-off p50 {} p99 {}\n",
        g.now->id, pct(g.hold_ns, interval_s * 1e9), 100.0 * g.now->utilization,
        g.switches / interval_s, g.requests / interval_s,
        report::format_duration(g.now->handoff_ns.p50),
        report::format_duration(g.now->handoff_ns.p99));
    // Free-threaded builds: zero rates are no news while the GIL is off.
    if (!g.now->enabled_changes.empty() && g.now->enabled_changes.back().enabled == 0)
      out << fmt::format("  GIL {} is disabled (free-threaded build)\n", g.now->id);
  }
  out << fmt::format("\n{:<22} {:>8} {:>7} {:>7} {:>9} {:>7} {:>7} {:>10} {:>10}\n", "THREAD",
                     "TID", "HELD%", "WAIT%", "ACQ/s", "HELD%Σ", "WAIT%Σ", "WAIT p99",
                     "HOLD max");
  sort_threads(threads, opts.sort);
  size_t shown = 0;
  for (const auto& t : threads) {
    if (max_rows && shown++ >= max_rows) break;
    const auto& r = *t.now;
    out << fmt::format("{:<22.22} {:>8} {:>7.1f} {:>7.1f} {:>9.0f} {:>7.1f} {:>7.1f} {:>10} {:>10}\n",
                       r.name, r.tid, pct(t.held_ns, t.span_ns), pct(t.wait_ns, t.span_ns),
                       t.acquisitions / interval_s, pct(r.held_ns, r.lifetime_ns),
                       pct(r.wait_total_ns, r.lifetime_ns), report::format_duration(r.wait_ns.p99),
                       report::format_duration(r.hold_ns.max));
  }
  return out.str();
}

std::string render_interval_json(const report::Report& now, const std::vector<GilDelta>& gils,
                                 const std::vector<ThreadDelta>& threads, double interval_s) {
  std::ostringstream out;
  out << fmt::format("{{\"pid\": {}, \"elapsed_s\": {:.6f}, \"interval_s\": {:.6f}, \"gils\": [",
                     now.pid, now.duration_s, interval_s);
  for (size_t i = 0; i < gils.size(); ++i) {
    const auto& g = gils[i];
    out << fmt::format(
        "{}{{\"id\": {}, \"utilization\": {:.6f}, \"acquisitions\": {}, \"switches\": {}, "
        "\"forced_switch_requests\": {}}}",
        i ? ", " : "", g.now->id, g.hold_ns / (interval_s * 1e9), g.acquisitions, g.switches,
        g.requests);
  }
  out << "], \"threads\": [";
  for (size_t i = 0; i < threads.size(); ++i) {
    const auto& t = threads[i];
    out << fmt::format(
        "{}{{\"tid\": {}, \"name\": {}, \"own\": {}, \"gil\": {}, \"held_s\": {:.9f}, "
        "\"wait_s\": {:.9f}, \"acquisitions\": {}}}",
        i ? ", " : "", t.now->tid, report::json_string(t.now->name), t.now->own, t.now->gil,
        t.held_ns / 1e9, t.wait_ns / 1e9, t.acquisitions);
  }
  std::ostringstream total;
  report::render_json(now, total);
  std::string since = total.str();
  // One object per line (JSON Lines): the report's own line breaks go; its
  // strings are escaped, so no break is inside a string.
  for (char& c : since)
    if (c == '\n') c = ' ';
  while (!since.empty() && since.back() == ' ') since.pop_back();
  out << "], \"since_attach\": " << since << "}\n";
  return out.str();
}

// Raw, non-echoing stdin so a single `q` quits; restored on destruction.
class RawTerminal {
 public:
  RawTerminal() {
    if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_) != 0) return;
    termios raw = saved_;
    raw.c_lflag &= ~(ICANON | ECHO);
    raw.c_cc[VMIN] = 0;
    raw.c_cc[VTIME] = 0;
    active_ = tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
  }
  ~RawTerminal() {
    if (active_) tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
  }
  bool quit_pressed() const {
    if (!active_) return false;
    char c;
    while (read(STDIN_FILENO, &c, 1) == 1)
      if (c == 'q' || c == 'Q') return true;
    return false;
  }

 private:
  termios saved_{};
  bool active_ = false;
};

int top(const TopOptions& opts) {
  if (opts.interval <= 0) throw Error("--interval must be positive", {}, kExitUsage);
  if (opts.sort != "held" && opts.sort != "wait" && opts.sort != "acq")
    throw Error("--sort must be held, wait or acq", {}, kExitUsage);
  const bool screen = !opts.json && isatty(STDOUT_FILENO);
  install_stop_signals();
  AttachSession session(opts.pid, parse_attach_method(opts.method));
  ClockCalibration calibration(session.clock());
  Capture capture(session.region(), nullptr);
  RawTerminal terminal;
  if (screen) std::cout << "\033[?25l";  // hide the cursor while redrawing
  // Shown again however top ends (a corrupt region ends it with an error).
  struct ShowCursor {
    bool on;
    ~ShowCursor() {
      if (on) std::cout << "\033[?25h\n" << std::flush;
    }
  } show_cursor{screen};
  const uint64_t started = monotonic_ns();
  uint64_t next = started + static_cast<uint64_t>(opts.interval * 1e9);
  report::Report prev;
  uint64_t prev_ns = started;
  bool exited = false, quit = false;
  while (!stop_requested() && !quit) {
    capture.poll();
    session.region().beat();
    quit = terminal.quit_pressed();
    exited = session.target_exited(5);
    const uint64_t now_ns = monotonic_ns();
    const bool done = exited || quit || stop_requested() ||
                      (opts.duration > 0 && now_ns - started >= opts.duration * 1e9);
    if (now_ns < next && !done) continue;
    next += static_cast<uint64_t>(opts.interval * 1e9);
    calibration.sample();
    capture.poll();
    report::Report now = capture.snapshot(read_clock(session.clock()), calibration.ns_per_tick(),
                                          session.command());
    const double interval_s = (now_ns - prev_ns) / 1e9;
    const auto gils = gil_deltas(prev, now);
    const auto threads = thread_deltas(prev, now, interval_s * 1e9);
    if (opts.json) {
      std::cout << render_interval_json(now, gils, threads, interval_s) << std::flush;
    } else if (screen) {
      std::cout << "\033[H\033[2J" << render_table(now, gils, threads, opts, interval_s, 40)
                << "\n(q to quit)" << std::flush;
    } else {
      std::cout << render_table(now, gils, threads, opts, interval_s, 0) << "\n" << std::flush;
    }
    prev = std::move(now);
    prev_ns = now_ns;
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
  cmd->add_flag("--json", opts->json, "One JSON object per interval on stdout");
  add_method_option(*cmd, opts->method);
  cmd->callback([opts, &action] { action = [opts] { return top(*opts); }; });
}

}  // namespace gilstat::cli

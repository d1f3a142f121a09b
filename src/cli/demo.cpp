// gilstat demo NAME [--python PATH] [--attach] [ARGS...]
// gilstat demo --check [--python PATH] [--attach]
// gilstat demo --list
//
// Runs a bundled workload whose GIL behaviour is known in advance
// (probe_ext/demo/) under the probe, and sets each number gilstat measured
// next to what it must be.  The scripts print their own ground truth as
// `gilstat-demo KIND key=value ...` lines on stdout (demo_common.py), so the
// expectations can use the real thread ids, native timings and counts.
//
// The probe is preloaded as by `gilstat run`, or with --attach injected into
// the running script as by `record --pid` (demo_attach.cpp): the same checks
// judge both.
//
// The pieces: demo_truth (the checks, pure functions of a report),
// demo_session (running the scripts), demo_catalogue (each demo and its
// bounds, explained where they are set); this file prints and drives them.
#include <fmt/core.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "cli/demo_catalogue.hpp"
#include "cli/demo_session.hpp"
#include "cli/demo_truth.hpp"
#include "cli/table_options.hpp"
#include "common/error.hpp"
#include "common/procfs.hpp"
#include "report/render_text.hpp"

namespace gilstat::cli {
namespace demo {
namespace {

// ---------------------------------------------------------------------------
// Output.

// From here on, starvation is worth a line: it shifts timing numbers by
// about as much.
constexpr double kStarvedNote = 0.02;

void print_verdict(const Verdict& v, std::ostream& out) {
  if (!v.skip.empty()) {
    out << "  SKIP  " << v.skip << "\n";
    return;
  }
  size_t w_what = 0, w_exp = 0;
  for (const auto& c : v.checks) {
    w_what = std::max(w_what, c.what.size());
    w_exp = std::max(w_exp, c.expected.size());
  }
  out << fmt::format("  {:<{}}  {:<{}}  {}\n", "", w_what, "expected", w_exp, "measured");
  for (const auto& c : v.checks)
    out << fmt::format("  {:<{}}  {:<{}}  {:<12} {}\n", c.what, w_what, c.expected, w_exp,
                       c.measured, c.pass ? "PASS" : "FAIL");
  for (const auto& n : v.notes) out << "  · " << n << "\n";
  if (v.starved >= kStarvedNote)
    out << fmt::format(
        "  · CPU starvation: the timed threads spent {} of their lifetimes "
        "runnable but without a CPU (schedstat): other programs had the cores\n",
        pct(v.starved));
}

Verdict run_demo(Session& s, const Demo& d, double param, bool with_report, std::ostream& out,
                 const report::TextOptions& text = {}) {
  const std::string title = d.param.usage.empty() ? d.name : fmt::format("{} {:g}", d.name, param);
  out << fmt::format("== demo {}: {}\n   {}\n", title, d.what, s.mode());
  s.take_used();
  Verdict v = d.evaluate(s, param);
  const Run* shown = v.shown;
  const std::vector<const Run*> used = s.take_used();
  for (const Run* r : used) {
    v.starved = std::max(v.starved, starvation(r->truth, r->report()));
    if (v.skip.empty()) exact_checks(r->report(), used.size() > 1 ? r->script + ": " : "", v);
  }
  if (shown) {
    if (with_report) {
      out << "\n";
      report::render_text(shown->report(), out, text);
      out << "\n";
    } else {
      out << fmt::format("   Python {} · {}\n", shown->report().python_version, shown->command);
    }
  }
  print_verdict(v, out);
  out << "  learn: " << d.lesson << "\n";
  return v;
}

void print_list(std::ostream& out) {
  for (const auto& d : demos())
    out << fmt::format("  {:<20} {}\n", d.name + (d.param.usage.empty() ? "" : " " + d.param.usage),
                       d.what);
}

// "4 CPUs, load average 1.23": timing demos need free cores, so a failure
// is shown with how busy the machine was.
std::string machine_load() {
  return fmt::format("{} CPUs, load average {:.2f}", sysconf(_SC_NPROCESSORS_ONLN),
                     procfs::loadavg_1min());
}

// A shared machine can starve a run of CPU for long enough to push a timing
// number out of its tolerance (other programs take the cores the workload
// was designed to get).  --check therefore reruns a demo whose failed checks
// are all timing bounds in a fresh process, up to kAttempts runs, and says
// which bounds it reran for.  An exact check (switches == switch_number,
// nothing dropped, held + wait + released == lifetime, counts, presence)
// holds however busy the machine is: one failure fails the demo, never
// rerun, and every rerun is held to them again.
constexpr int kAttempts = 3;

std::string failed_names(const Verdict& v) {
  std::string names;
  for (const auto& c : v.checks)
    if (!c.pass) names += (names.empty() ? "" : ", ") + c.what;
  return names;
}

int check_all(Session& s, std::ostream& out) {
  std::vector<std::string> summary;
  int failed = 0;
  for (const auto& d : demos()) {
    Verdict v;
    int attempt = 1;
    std::vector<std::string> reruns;  // why each rerun happened
    for (;; ++attempt) {
      try {
        v = run_demo(s, d, d.param.fallback, false, out);
      } catch (const ScriptFailed& e) {
        out << "  FAIL  " << e.what() << "\n";
        v = Verdict{};
        v.checks.push_back({"the demo script", "exit status 0", e.what(), false});
      }
      if (!v.skip.empty() || v.passed()) break;
      if (!v.failed_timing_only()) {
        out << "  FAIL of an exact check: not rerun (it holds however busy the machine is)\n";
        break;
      }
      if (attempt == kAttempts) break;
      reruns.push_back(fmt::format("attempt {}: {}{}", attempt, failed_names(v),
                                   v.starved >= kStarvedNote
                                       ? fmt::format(", threads starved of CPU {}", pct(v.starved))
                                       : ""));
      out << fmt::format(
          "  FAIL on attempt {} of {} of timing bounds only ({}): they need free cores ({}), "
          "rerunning in a fresh process\n",
          attempt, kAttempts, failed_names(v), machine_load());
      s.forget();
    }
    out << "\n";
    const std::string tries = reruns.empty()
                                  ? ""
                                  : fmt::format(" (attempt {} of {}; timing bounds rerun: {})",
                                                attempt, kAttempts, fmt::join(reruns, "; "));
    if (!v.skip.empty()) {
      summary.push_back(fmt::format("SKIP {}: {}", d.name, v.skip));
    } else if (v.passed()) {
      summary.push_back(fmt::format("PASS {}{}", d.name, tries));
    } else {
      ++failed;
      const std::string starved =
          v.starved >= kStarvedNote
              ? fmt::format("; threads starved of CPU {} of the time", pct(v.starved))
              : "";
      const std::string runs = v.failed_timing_only()
                                   ? fmt::format("all {} attempts", attempt)
                                   : fmt::format("attempt {}, exact: not rerun", attempt);
      for (const auto& c : v.checks)
        if (!c.pass)
          summary.push_back(fmt::format("FAIL {}: {}: expected {}, measured {} ({}{})", d.name,
                                        c.what, c.expected, c.measured, runs, starved));
    }
  }
  out << fmt::format("demo --check{} with {} ({}):\n", s.attach() ? " --attach" : "", s.python(),
                     machine_load());
  for (const auto& line : summary) out << "  " << line << "\n";
  return failed ? kExitRuntime : kExitOk;
}

struct DemoOptions {
  std::vector<std::string> words;  // NAME and its arguments
  std::string python;
  bool check = false;
  bool list = false;
  bool attach = false;
  MaxThreadsOption max_threads;
};

int demo_command(const DemoOptions& o) {
  const int modes = (o.check ? 1 : 0) + (o.list ? 1 : 0) + (o.words.empty() ? 0 : 1);
  if (modes != 1)
    throw Error("give exactly one of: a demo NAME, --check or --list",
                "e.g. `gilstat demo spin`, `gilstat demo --check`", kExitUsage);
  if (o.list) {
    print_list(std::cout);
    return kExitOk;
  }
  if (o.check) {
    Session s(o.python, o.attach);
    return check_all(s, std::cout);
  }
  const Demo& d = find_demo(o.words[0]);
  const double param = parse_param(d, {o.words.begin() + 1, o.words.end()});
  const report::TextOptions text = text_options(o.max_threads, STDOUT_FILENO);
  Session s(o.python, o.attach);
  const Verdict v = run_demo(s, d, param, true, std::cout, text);
  if (v.skip.empty() && !v.passed()) {
    std::cout << fmt::format(
        "  note: measured on {}; timing numbers need free cores, so "
        "rerun on a quieter machine before trusting a FAIL\n",
        machine_load());
    return kExitRuntime;
  }
  return kExitOk;
}

}  // namespace
}  // namespace demo

void add_demo_command(CLI::App& app, Action& action) {
  auto opts = std::make_shared<demo::DemoOptions>();
  CLI::App* demo = app.add_subcommand(
      "demo", "Run a bundled workload with known GIL behaviour and check gilstat's numbers");
  demo->add_option("name", opts->words, "Demo NAME and its arguments (see --list)");
  demo->add_option("--python", opts->python,
                   "Interpreter to run the demos with (default: python3 on PATH)");
  demo->add_flag("--check", opts->check,
                 "Run every demo; exit 1 if any number is outside its tolerance");
  demo->add_flag("--list", opts->list, "List the demos");
  demo->add_flag("--attach", opts->attach,
                 "Start the demo without the probe and attach to it as `record --pid` does");
  add_max_threads_option(*demo, opts->max_threads);
  demo->callback([opts, &action] { action = [opts] { return demo::demo_command(*opts); }; });
}

}  // namespace gilstat::cli

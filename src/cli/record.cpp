// gilstat record -o FILE [--duration S] (--pid PID [--method M] | -- PROGRAM ARGS...)
//
// Saves a recording while showing a one-line live status on stderr
// (elapsed, events, drops, bytes); read it back with `gilstat report FILE`.
// With -- PROGRAM it is `run -o FILE` without the printed report; with --pid
// it attaches to a running process until Ctrl-C, SIGTERM, --duration or the
// target's exit, then unhooks the probe.
#include <fmt/core.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>

#include "cli/attach_session.hpp"
#include "cli/capture.hpp"
#include "cli/commands.hpp"
#include "cli/hog_watcher.hpp"
#include "cli/launch.hpp"
#include "cli/live_stacks.hpp"
#include "cli/outside_names.hpp"
#include "cli/profile_sampler.hpp"
#include "common/clock.hpp"
#include "common/error.hpp"
#include "report/utf8.hpp"

namespace gilstat::cli {
namespace {

struct RecordOptions {
  std::string output;
  std::vector<std::string> argv;
  int pid = 0;
  double duration = 0;  // seconds; 0 = until stopped
  std::string method;   // --method, with --pid
  StackOptions stacks;
};

std::string status_line(const LiveStatus& s) {
  return fmt::format("gilstat: recording  {:7.1f} s  {:>10} events  {:>6} drops  {:>8.1f} KiB",
                     s.elapsed_s, s.events, s.drops, s.bytes / 1024.0);
}

// The holders of the report so far, for the status line: a hold that is
// still running (since before the attach, say) counts up to now.
std::string holders_text(const report::Report& r) {
  std::string out;
  for (const auto& g : r.gils) {
    if (!g.holder_tid) continue;
    std::string name = fmt::format("native-{}", g.holder_tid);
    for (const auto& t : r.threads)
      if (t.tid == g.holder_tid && t.gil == g.id && !t.name.empty()) name = t.name;
    out +=
        fmt::format("  GIL {} held by {} for {:.1f} s{}", g.id, report::printable(name),
                    g.holder_for_ns / 1e9, g.holder_since_attach ? " (since before attach)" : "");
  }
  return out;
}

void print_saved(const std::string& path, const LiveStatus& s) {
  std::cerr << fmt::format(
      "gilstat: saved {} ({} events, {} drops, {:.1f} KiB); "
      "read it with `gilstat report {}`\n",
      path, s.events, s.drops, s.bytes / 1024.0, path);
}

int record_pid(const RecordOptions& opts) {
  const bool tty = isatty(STDERR_FILENO);
  install_stop_signals();
  // Attach first: a failed attach must not create (or clobber) the file.
  AttachSession session(opts.pid, parse_attach_method(opts.method));
  proto::RecordingWriter writer(opts.output);
  Capture capture(session.region(), &writer);
  capture.set_host_pid(opts.pid);
  name_threads_from_outside(session.target(), capture);
  ProfileSampler profile(session.target(), session.clock(), opts.stacks.profile_rate);
  HogWatcher hogs(session.target(), session.clock(), opts.stacks.hog_threshold_ns());
  const uint64_t started = monotonic_ns();
  uint64_t next_tick = started;
  ClockCalibration calibration(session.clock());
  uint64_t ticks = 0;
  std::string holders;
  auto status = [&] {
    return LiveStatus{(monotonic_ns() - started) / 1e9, capture.events(),
                      capture.drops() + capture.drops_no_ring(), writer.bytes()};
  };
  const bool exited =
      record_attached(session, capture, [&] {
        profile.flush(session.region(), &writer);
        hogs.tick(session.region(), profile, &writer);
        if (stop_requested()) return false;
        if (opts.duration > 0 && monotonic_ns() - started >= opts.duration * 1e9) return false;
        if (tty && monotonic_ns() >= next_tick) {
          // The holder needs a report: once a second, not every tick.
          if (ticks++ % 10 == 0) {
            calibration.sample();
            holders = holders_text(
                capture.snapshot(read_clock(session.clock()), calibration.ns_per_tick(), {}));
          }
          next_tick += 100'000'000;
          std::cerr << "\r" << status_line(status()) << holders << "\033[K" << std::flush;
        }
        return true;
      }).exited;
  writer.close();
  if (tty) std::cerr << "\r\033[K";
  if (exited) std::cerr << fmt::format("gilstat: process {} exited\n", opts.pid);
  if (opts.stacks.hog_threshold_ns() != 0) std::cerr << "gilstat: " << hogs.summary() << "\n";
  print_saved(opts.output, status());
  if (session.region().corrupt()) throw proto::RegionCorrupt(session.region().corruption(), true);
  return kExitOk;
}

int record_program(const RecordOptions& opts) {
  if (opts.pid > 0) {
    if (!opts.argv.empty())
      throw Error("give either --pid or a program after --, not both", {}, kExitUsage);
    parse_attach_method(opts.method);  // a bad --method is a usage error before attaching
    opts.stacks.hog_threshold_ns();
    return record_pid(opts);
  }
  if (opts.argv.empty())
    throw Error("nothing to record", "use --pid PID, or -- PROGRAM ARGS...", kExitUsage);
  if (!opts.method.empty())
    throw Error("--method applies to --pid only",
                "a launched program gets the probe preloaded; drop --method", kExitUsage);
  opts.stacks.hog_threshold_ns();  // a bad --hog-threshold is a usage error before the launch
  const bool tty = isatty(STDERR_FILENO);
  LaunchOptions launch_opts{opts.argv, opts.output, false, {}, {}, opts.stacks};
  launch_opts.on_tick = [&](const LiveStatus& s) {
    if (tty) std::cerr << "\r" << status_line(s) << std::flush;
  };
  const LaunchResult r = launch(launch_opts);
  if (tty) std::cerr << "\r\033[K";
  if (r.region_corrupt) {  // what was read before is saved
    print_saved(opts.output, r.final_status);
    print_outcome(r.outcome);
    return kExitRuntime;
  }
  if (!r.outcome.error.empty()) {
    print_outcome(r.outcome);
    return r.exit_code != 0 ? r.exit_code : r.outcome.code;
  }
  if (!r.hog_summary.empty()) std::cerr << "gilstat: " << r.hog_summary << "\n";
  print_saved(opts.output, r.final_status);
  return r.exit_code;
}

}  // namespace

void add_record_command(CLI::App& app, Action& action) {
  auto opts = std::make_shared<RecordOptions>();
  CLI::App* cmd = app.add_subcommand("record", "Record GIL events of a program to a file");
  cmd->add_option("-o,--output", opts->output, "Recording file to write")->required();
  cmd->add_option("-p,--pid", opts->pid, "Attach to this running CPython process");
  cmd->add_option("-d,--duration", opts->duration, "Stop after S seconds (with --pid)");
  add_stack_options(*cmd, opts->stacks);
  add_method_option(*cmd, opts->method);
  cmd->add_option("command", opts->argv, "PROGRAM and its arguments (after --)");
  cmd->positionals_at_end();
  cmd->callback([opts, &action] { action = [opts] { return record_program(*opts); }; });
}

}  // namespace gilstat::cli

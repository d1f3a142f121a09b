// gilstat record -o FILE -- PROGRAM ARGS...
//
// `run -o FILE` without the printed report: saves the recording and shows a
// one-line live status on stderr (elapsed, events, drops, bytes).  Read it
// back with `gilstat report FILE`.
#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <unistd.h>

#include <iostream>
#include <memory>

#include "cli/commands.hpp"
#include "cli/launch.hpp"

namespace gilstat::cli {
namespace {

struct RecordOptions {
  std::string output;
  std::vector<std::string> argv;
};

std::string status_line(const LiveStatus& s) {
  return fmt::format("gilstat: recording  {:7.1f} s  {:>10} events  {:>6} drops  {:>8.1f} KiB",
                     s.elapsed_s, s.events, s.drops, s.bytes / 1024.0);
}

int record_program(const RecordOptions& opts) {
  const bool tty = isatty(STDERR_FILENO);
  LaunchOptions launch_opts{opts.argv, opts.output, false, {}, {}};
  launch_opts.on_tick = [&](const LiveStatus& s) {
    if (tty) std::cerr << "\r" << status_line(s) << std::flush;
  };
  const LaunchResult r = launch(launch_opts);
  if (tty) std::cerr << "\r\033[K";
  if (!r.outcome.error.empty()) {
    print_outcome(r.outcome);
    return r.exit_code != 0 ? r.exit_code : r.outcome.code;
  }
  const LiveStatus& s = r.final_status;
  std::cerr << fmt::format("gilstat: saved {} ({} events, {} drops, {:.1f} KiB); "
                           "read it with `gilstat report {}`\n",
                           opts.output, s.events, s.drops, s.bytes / 1024.0, opts.output);
  return r.exit_code;
}

}  // namespace

void add_record_command(CLI::App& app, Action& action) {
  auto opts = std::make_shared<RecordOptions>();
  CLI::App* cmd = app.add_subcommand("record", "Record GIL events of a program to a file");
  cmd->add_option("-o,--output", opts->output, "Recording file to write")->required();
  cmd->add_option("command", opts->argv, "PROGRAM and its arguments (after --)")->required();
  cmd->positionals_at_end();
  cmd->callback([opts, &action] { action = [opts] { return record_program(*opts); }; });
}

}  // namespace gilstat::cli

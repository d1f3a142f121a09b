// gilstat run [--json] [-o FILE] [--max-threads N|all] [--profile-rate HZ]
//             [--hog-threshold MS] -- PROGRAM ARGS...
//
// Launches PROGRAM with the probe preloaded and prints the report on stderr
// once it exits, with the held-time profile and the long holds' stacks
// taken as `record --pid` takes them (live_stacks.hpp).  The program's stdin/stdout/stderr are its
// own; gilstat exits with the program's exit code (128+N when a signal N killed it).
#include <fmt/core.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>

#include "cli/commands.hpp"
#include "cli/launch.hpp"
#include "cli/live_stacks.hpp"
#include "cli/table_options.hpp"
#include "report/render_json.hpp"
#include "report/render_text.hpp"

namespace gilstat::cli {
namespace {

struct RunOptions {
  bool json = false;
  std::string output;
  std::vector<std::string> argv;
  MaxThreadsOption max_threads;
  StackOptions stacks;
};

int run_program(const RunOptions& opts) {
  opts.stacks.hog_threshold_ns();  // a bad --hog-threshold is a usage error before the launch
  const report::TextOptions text = text_options(opts.max_threads, STDERR_FILENO);
  LaunchOptions launch_opts;
  launch_opts.argv = opts.argv;
  launch_opts.output = opts.output;
  launch_opts.stacks = opts.stacks;
  const LaunchResult r = launch(launch_opts);
  if (r.region_corrupt) {  // the program ran on, unmeasured: its exit code stands
    print_outcome(r.outcome);
    return r.exit_code;
  }
  if (!r.outcome.error.empty()) {
    print_outcome(r.outcome);
    return r.exit_code != 0 ? r.exit_code : r.outcome.code;
  }
  if (opts.json)
    report::render_json(r.report, std::cerr);
  else if (r.outcome.note.empty())
    report::render_text(r.report, std::cerr, text);
  if (!r.hog_summary.empty()) std::cerr << "gilstat: " << r.hog_summary << "\n";
  if (!r.outcome.note.empty())
    std::cerr << "gilstat: " << r.outcome.note << "\nhint: " << r.outcome.hint << "\n";
  if (WIFSIGNALED(r.wait_status))
    std::cerr << fmt::format("gilstat: {} was killed by signal {} ({})\n", opts.argv[0],
                             WTERMSIG(r.wait_status), strsignal(WTERMSIG(r.wait_status)));
  return r.exit_code;
}

}  // namespace

void add_run_command(CLI::App& app, Action& action) {
  auto opts = std::make_shared<RunOptions>();
  CLI::App* run = app.add_subcommand(
      "run", "Run a program with the probe loaded; print a GIL report on stderr at exit");
  run->add_flag("--json", opts->json, "Print the report as JSON");
  run->add_option("-o,--output", opts->output, "Also save the recording to FILE");
  add_max_threads_option(*run, opts->max_threads);
  add_stack_options(*run, opts->stacks);
  run->add_option("command", opts->argv, "PROGRAM and its arguments (after --)")->required();
  run->positionals_at_end();
  run->callback([opts, &action] { action = [opts] { return run_program(*opts); }; });
}

}  // namespace gilstat::cli

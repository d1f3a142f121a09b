// gilstat report FILE [--json] [--thread TID|NAME]... [--since S] [--until S]
//                     [--max-threads N|all]
//
// The report of a saved recording on stdout: the tables, the wait/hold
// distributions and what they mean.  A recording that was cut off or
// damaged is reported as far as it goes, with a warning, not refused.
#include <fmt/core.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <iostream>
#include <memory>

#include "cli/commands.hpp"
#include "cli/replay.hpp"
#include "cli/table_options.hpp"
#include "common/error.hpp"
#include "report/groups.hpp"
#include "report/render_json.hpp"
#include "report/render_text.hpp"

namespace gilstat::cli {
namespace {

struct ReportOptions {
  std::string file;
  bool json = false;
  std::vector<std::string> threads;  // TIDs or names
  double since = 0, until = 0;
  CLI::Option* since_opt = nullptr;
  CLI::Option* until_opt = nullptr;
  MaxThreadsOption max_threads;
};

bool matches(const report::ThreadReport& t, const std::string& want) {
  return t.name == want || fmt::format("{}", t.tid) == want;
}

void filter_threads(report::Report& r, const std::vector<std::string>& wanted) {
  if (wanted.empty()) return;
  std::vector<report::ThreadReport> kept;
  for (const auto& t : r.threads)
    if (std::any_of(wanted.begin(), wanted.end(), [&](const auto& w) { return matches(t, w); }))
      kept.push_back(t);
  if (kept.empty()) {
    // The hint names a few threads, not all of a 10,000-thread recording.
    constexpr size_t kShown = 8;
    std::string known;
    for (size_t i = 0; i < r.threads.size() && i < kShown; ++i)
      known += fmt::format("{}{} ({})", i ? ", " : "", r.threads[i].name, r.threads[i].tid);
    if (r.threads.size() > kShown) known += fmt::format(" and {} more", r.threads.size() - kShown);
    throw Error(
        fmt::format("no thread matches {}", fmt::join(wanted, " or ")),
        known.empty() ? "the recording has no threads" : "threads in this recording: " + known,
        kExitUsage);
  }
  r.threads = std::move(kept);
  r.groups = report::group_threads(r.threads);
}

int report_file(const ReportOptions& opts) {
  report::TextOptions text = text_options(opts.max_threads, STDOUT_FILENO);
  WindowSpec window;
  if (opts.since_opt->count()) window.since_s = opts.since;
  if (opts.until_opt->count()) window.until_s = opts.until;
  report::Report r = report_from_file(opts.file, window);
  filter_threads(r, opts.threads);
  if (opts.json) {
    report::render_json(r, std::cout);
  } else {
    text.histograms = true;
    text.thread_histograms = !opts.threads.empty();
    text.findings = true;
    report::render_text(r, std::cout, text);
  }
  return kExitOk;
}

}  // namespace

void add_report_command(CLI::App& app, Action& action) {
  auto opts = std::make_shared<ReportOptions>();
  CLI::App* cmd = app.add_subcommand("report", "Print the report of a saved recording");
  cmd->add_option("file", opts->file, "Recording written by `gilstat record` or `run -o`")
      ->required();
  cmd->add_flag("--json", opts->json, "Print the report as JSON");
  cmd->add_option("--thread", opts->threads, "Only this thread's rows (TID or name; repeatable)");
  add_max_threads_option(*cmd, opts->max_threads);
  opts->since_opt =
      cmd->add_option("--since", opts->since, "Start S seconds after the recording's start");
  opts->until_opt =
      cmd->add_option("--until", opts->until, "End S seconds after the recording's start");
  cmd->callback([opts, &action] { action = [opts] { return report_file(*opts); }; });
}

}  // namespace gilstat::cli

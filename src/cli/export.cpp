// gilstat export FILE --format chrome|prometheus|collapsed [-o OUT]
//
// chrome: a Chrome trace-event JSON timeline (Perfetto UI, chrome://tracing),
// streamed in two passes over the file (metadata, then events) so memory
// does not grow with the recording.  prometheus: the report's counters and
// histograms in the text exposition format.  collapsed: the held-time
// profile as folded stacks (flamegraph.pl, speedscope, inferno).  With -o the output appears
// atomically (written beside it, then renamed): a textfile collector never
// reads half a file.
#include <fmt/core.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>

#include "cli/commands.hpp"
#include "cli/replay.hpp"
#include "common/error.hpp"
#include "report/aggregator.hpp"
#include "report/chrome_trace.hpp"
#include "report/prometheus.hpp"
#include "report/render_hogs.hpp"
#include "report/render_json.hpp"
#include "report/render_profile.hpp"

namespace gilstat::cli {
namespace {

struct ExportOptions {
  std::string file;
  std::string format;
  std::string output;  // empty or "-": stdout
};

// Events into the trace writer.
class TraceFeed : public proto::RecordingVisitor {
 public:
  explicit TraceFeed(report::ChromeTraceWriter& w) : w_(w) {}
  void on_events(uint32_t tid, uint32_t flags, std::span<const proto::Event> events) override {
    w_.add_events(tid, flags, events.data(), events.size());
  }
  void on_frame(uint32_t id, const stacks::Frame& f) override { stacks_.define_frame(id, f); }
  void on_stack(uint32_t id, std::span<const uint32_t> ids) override {
    stacks_.define_stack(id, {ids.begin(), ids.end()});
  }
  // A long hold's stack goes on its slice.
  void on_sample(const stacks::Sample& s) override {
    if (s.reason != stacks::SampleReason::LongHold || s.gil > 0xff) return;
    const std::vector<uint32_t>* ids = stacks_.stack(s.stack);
    if (!ids) return;
    std::vector<std::string> frames;
    for (uint32_t id : *ids)
      if (const stacks::Frame* f = stacks_.frame(id)) frames.push_back(stacks::describe(*f));
    w_.add_long_hold(s.tid, static_cast<uint8_t>(s.gil), s.hold_start, std::move(frames));
  }

 private:
  report::ChromeTraceWriter& w_;
  stacks::StackTable stacks_;
};

void export_chrome(const ExportOptions& opts, std::ostream& out) {
  proto::RecordingSummary first;
  proto::read_recording(opts.file, first);
  const RecordingFrame frame = frame_of(first);
  report::ChromeTraceInfo info;
  info.pid = first.meta().pid;
  info.command = first.meta().command;
  info.gilstat_version = first.meta().gilstat_version;
  info.ns_per_tick = frame.ns_per_tick;
  info.window_start = frame.start;
  info.window_end = frame.end;
  info.names = first.names();
  for (const proto::RecGil& g : first.gils()) {
    const auto index = static_cast<uint8_t>(g.index);
    info.arm_ts[index] = g.arm_ts;
    for (const auto& [tid, role] : g.at_arm)
      info.declared_at_arm[index][tid] = role == report::kArmHolds
                                             ? report::ThreadTimeline::State::Holding
                                             : report::ThreadTimeline::State::Waiting;
  }
  report::ChromeTraceWriter writer(out, info);
  TraceFeed feed(writer);
  const proto::ReadResult read = proto::read_recording(opts.file, feed);
  writer.finish(fmt::format(R"("pid": {}, "truncated": {}, "corrupt_chunks": {}, )"
                            R"("calibrated": {}, "source": {})",
                            info.pid, read.truncated, read.corrupt_chunks, frame.calibrated,
                            report::json_string(opts.file)));
  warn_problems(opts.file, read);
}

// Writes through `body` to opts.output (atomically) or stdout.
void emit(const ExportOptions& opts, const std::function<void(std::ostream&)>& body) {
  if (opts.output.empty() || opts.output == "-") {
    body(std::cout);
    std::cout.flush();
    if (!std::cout) throw Error("error while writing the export to stdout");
    return;
  }
  // A device or a pipe (/dev/null, /dev/stdout, a FIFO) is written in place:
  // renaming a file over it would replace it.
  struct stat st;
  if (stat(opts.output.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    std::ofstream out(opts.output, std::ios::binary);
    if (!out)
      throw Error(fmt::format("cannot open {}: {}", opts.output, std::strerror(errno)), {},
                  errno == EACCES ? kExitPermission : kExitRuntime);
    body(out);
    out.flush();
    if (!out) throw Error(fmt::format("error while writing {}", opts.output));
    return;
  }
  const std::string tmp = fmt::format("{}.tmp.{}", opts.output, getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out)
      throw Error(fmt::format("cannot create {}: {}", tmp, std::strerror(errno)),
                  "check the directory exists and is writable",
                  errno == EACCES ? kExitPermission : kExitRuntime);
    try {
      body(out);
    } catch (...) {
      std::remove(tmp.c_str());
      throw;
    }
    out.close();
    if (!out) {
      std::remove(tmp.c_str());
      throw Error(fmt::format("error while writing {}", tmp), "is the disk full?");
    }
  }
  if (std::rename(tmp.c_str(), opts.output.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    throw Error(fmt::format("cannot rename {} to {}: {}", tmp, opts.output, std::strerror(err)));
  }
}

int export_file(const ExportOptions& opts) {
  if (opts.format == "chrome") {
    emit(opts, [&](std::ostream& out) { export_chrome(opts, out); });
  } else if (opts.format == "collapsed") {
    const report::Report r = report_from_file(opts.file);
    if (r.gil_profile.samples == 0 && r.hogs.holds == 0)
      throw Error(fmt::format("{} holds no stack samples: there is no held-time profile to export",
                              opts.file),
                  "record one with `gilstat record --pid PID -o FILE` (--profile-rate, default "
                  "200 samples a second)");
    emit(opts, [&](std::ostream& out) {
      report::render_collapsed(r, out);
      report::render_hogs_collapsed(r, out);
    });
  } else {
    const report::Report r = report_from_file(opts.file);
    emit(opts, [&](std::ostream& out) { report::render_prometheus(r, out); });
  }
  if (!opts.output.empty() && opts.output != "-")
    std::cerr << fmt::format("gilstat: wrote {}\n", opts.output);
  return kExitOk;
}

}  // namespace

void add_export_command(CLI::App& app, Action& action) {
  auto opts = std::make_shared<ExportOptions>();
  CLI::App* cmd = app.add_subcommand(
      "export", "Convert a recording for other tools (Perfetto, Prometheus, flame graphs)");
  cmd->add_option("file", opts->file, "Recording written by `gilstat record` or `run -o`")
      ->required();
  cmd->add_option("-f,--format", opts->format,
                  "chrome: trace-event JSON for Perfetto / chrome://tracing; "
                  "prometheus: text exposition format; collapsed: folded stacks of the "
                  "held-time profile and, under the root \"long holds\", the long holds' "
                  "stacks (flamegraph.pl, speedscope), N = held ns")
      ->required()
      ->check(CLI::IsMember({"chrome", "prometheus", "collapsed"}));
  cmd->add_option("-o,--output", opts->output, "Write here instead of stdout");
  cmd->callback([opts, &action] { action = [opts] { return export_file(*opts); }; });
}

}  // namespace gilstat::cli

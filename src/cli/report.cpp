// gilstat report FILE [--json]: the report of a saved recording, on stdout.
#include <CLI/CLI.hpp>

#include <iostream>
#include <memory>

#include "cli/capture.hpp"
#include "cli/commands.hpp"
#include "common/error.hpp"
#include "report/render_json.hpp"
#include "report/render_text.hpp"

namespace gilstat::cli {
namespace {

struct ReportOptions {
  std::string file;
  bool json = false;
};

// Feeds a recording into the aggregator; metadata is kept for the end.
class Replay : public proto::RecordingVisitor {
 public:
  explicit Replay(report::Aggregator& agg) : agg_(agg) {}
  void on_meta(const proto::RecMeta& m) override { meta = m; }
  void on_event(uint32_t tid, uint32_t flags, const proto::Event& ev) override {
    agg_.add_event(tid, flags, ev);
  }
  void on_name(uint32_t tid, const std::string& name) override { agg_.set_thread_name(tid, name); }
  void on_drops(uint32_t tid, uint64_t n) override { agg_.add_thread_drops(tid, n); }
  void on_gil(const proto::RecGil& g) override { gils.push_back(g); }
  void on_end(const proto::RecEnd& e) override { end = e; }

  proto::RecMeta meta;
  std::vector<proto::RecGil> gils;
  proto::RecEnd end;

 private:
  report::Aggregator& agg_;
};

int report_file(const ReportOptions& opts) {
  report::Aggregator aggregator;
  Replay replay(aggregator);
  const proto::ReadResult result = proto::read_recording(opts.file, replay);
  if (!result.complete)
    throw Error(opts.file + " is incomplete: the recording was cut off before its end record",
                "it was probably written by a gilstat that was killed");
  const report::Report report = build_report(aggregator, replay.meta, replay.gils, replay.end);
  if (opts.json)
    report::render_json(report, std::cout);
  else
    report::render_text(report, std::cout);
  return kExitOk;
}

}  // namespace

void add_report_command(CLI::App& app, Action& action) {
  auto opts = std::make_shared<ReportOptions>();
  CLI::App* cmd = app.add_subcommand("report", "Print the report of a saved recording");
  cmd->add_option("file", opts->file, "Recording written by `gilstat run -o FILE`")->required();
  cmd->add_flag("--json", opts->json, "Print the report as JSON");
  cmd->callback([opts, &action] { action = [opts] { return report_file(*opts); }; });
}

}  // namespace gilstat::cli

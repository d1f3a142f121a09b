#include <CLI/CLI.hpp>
#include <iostream>

#include "cli/commands.hpp"
#include "common/error.hpp"
#include "gilstat/version.hpp"

int main(int argc, char** argv) {
  using namespace gilstat;
  CLI::App app{"gilstat: who holds the GIL, who waits for it, and for how long", "gilstat"};
  app.set_version_flag("--version", kVersion);
  app.require_subcommand(1);
  cli::Action action;
  cli::add_run_command(app, action);
  cli::add_top_command(app, action);
  cli::add_record_command(app, action);
  cli::add_report_command(app, action);
  cli::add_export_command(app, action);
  cli::add_attach_command(app, action);
  cli::add_demo_command(app, action);
  cli::add_exporter_command(app, action);
  cli::add_dump_command(app, action);
  cli::add_drain_command(app, action);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }
  try {
    return action ? action() : kExitUsage;
  } catch (const Error& e) {
    std::cerr << "gilstat: error: " << e.what() << "\n";
    if (!e.hint().empty()) std::cerr << "hint: " << e.hint() << "\n";
    return e.exit_code();
  } catch (const std::exception& e) {
    std::cerr << "gilstat: error: " << e.what() << "\n";
    return kExitRuntime;
  }
}

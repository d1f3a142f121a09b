// One function per subcommand, each in its own file.  A subcommand's
// callback stores what to run in `action`; main() runs it after parsing, so
// errors from running (not parsing) are handled in one place.
#pragma once

#include <functional>

namespace CLI {
class App;
}

namespace gilstat::cli {

using Action = std::function<int()>;

void add_run_command(CLI::App& app, Action& action);
void add_report_command(CLI::App& app, Action& action);
void add_export_command(CLI::App& app, Action& action);
void add_record_command(CLI::App& app, Action& action);
void add_top_command(CLI::App& app, Action& action);
void add_attach_command(CLI::App& app, Action& action);
void add_demo_command(CLI::App& app, Action& action);
void add_exporter_command(CLI::App& app, Action& action);
void add_dump_command(CLI::App& app, Action& action);
void add_drain_command(CLI::App& app, Action& action);

}  // namespace gilstat::cli

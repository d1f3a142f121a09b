// gilstat attach --pid PID --check
//
// Pre-flight only: says whether attaching would work and, if not, why —
// without stopping or touching the target.
#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <iostream>
#include <memory>

#include "attach/preflight.hpp"
#include "cli/commands.hpp"
#include "common/error.hpp"
#include "common/paths.hpp"

namespace gilstat::cli {
namespace {

struct AttachOptions {
  int pid = 0;
  bool check = false;
};

int attach_check(const AttachOptions& opts) {
  if (!opts.check)
    throw Error("`gilstat attach` only supports --check for now",
                "use `gilstat top --pid PID` or `gilstat record --pid PID -o FILE` to attach",
                kExitUsage);
  const attach::PreflightResult r = attach::preflight(opts.pid);
  const std::string probe = probe_library_path();
  std::cout << fmt::format(
      "gilstat: process {} can be attached: CPython {} ({} libpython: {}), probe {}\n", r.pid,
      r.version, r.shared_libpython ? "shared" : "static", r.object_path, probe);
  return kExitOk;
}

}  // namespace

void add_attach_command(CLI::App& app, Action& action) {
  auto opts = std::make_shared<AttachOptions>();
  CLI::App* cmd = app.add_subcommand("attach", "Check whether gilstat can attach to a process");
  cmd->add_option("-p,--pid", opts->pid, "CPython process")->required();
  cmd->add_flag("--check", opts->check, "Pre-flight only: report whether attaching would work");
  cmd->callback([opts, &action] { action = [opts] { return attach_check(*opts); }; });
}

}  // namespace gilstat::cli

// gilstat attach --pid PID --check [--method ptrace|remote-exec|auto]
//
// Pre-flight only: says whether attaching would work and, if not, why —
// without stopping or touching the target.
#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <iostream>
#include <memory>

#include "attach/preflight.hpp"
#include "cli/attach_session.hpp"
#include "cli/commands.hpp"
#include "common/error.hpp"
#include "common/paths.hpp"

namespace gilstat::cli {
namespace {

struct AttachOptions {
  int pid = 0;
  bool check = false;
  std::string method;
};

int attach_check(const AttachOptions& opts) {
  if (!opts.check)
    throw Error("`gilstat attach` only supports --check for now",
                "use `gilstat top --pid PID` or `gilstat record --pid PID -o FILE` to attach",
                kExitUsage);
  const AttachMethod requested = parse_attach_method(opts.method);
  const attach::PreflightResult r =
      attach::preflight(opts.pid, requested == AttachMethod::kPtrace);
  // Reads only: an explicit remote-exec that cannot work fails here as the
  // attach would.
  const MethodPlan plan = plan_method(r, requested);
  if (plan.method == AttachMethod::kPtrace) attach::check_not_traced(opts.pid);
  const std::string probe = probe_library_path();
  std::string how = method_name(plan.method);
  if (plan.method == AttachMethod::kRemoteExec) {
    how += fmt::format(" (PEP 768 request to main thread state {})",
                       attach::to_string(plan.remote->main_tstate));
  } else if (requested == AttachMethod::kAuto && !plan.remote_exec_problem.empty()) {
    how += fmt::format(" (remote-exec not possible: {})", plan.remote_exec_problem);
  }
  std::cout << fmt::format(
      "gilstat: process {} can be attached: CPython {} ({} libpython: {}), probe {}, "
      "method {}\n",
      r.pid, r.version, r.shared_libpython ? "shared" : "static", r.object_path, probe, how);
  return kExitOk;
}

}  // namespace

void add_attach_command(CLI::App& app, Action& action) {
  auto opts = std::make_shared<AttachOptions>();
  CLI::App* cmd = app.add_subcommand("attach", "Check whether gilstat can attach to a process");
  cmd->add_option("-p,--pid", opts->pid, "CPython process")->required();
  cmd->add_flag("--check", opts->check, "Pre-flight only: report whether attaching would work");
  add_method_option(*cmd, opts->method);
  cmd->callback([opts, &action] { action = [opts] { return attach_check(*opts); }; });
}

}  // namespace gilstat::cli

#include "cli/demo_session.hpp"

#include <fmt/core.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <sstream>
#include <utility>

#include "cli/demo_attach.hpp"
#include "common/paths.hpp"

namespace gilstat::cli::demo {
namespace {

std::string find_on_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    const std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return {};
}

std::string resolve_python(const std::string& requested) {
  const std::string name = requested.empty() ? "python3" : requested;
  const std::string path = name.find('/') != std::string::npos
                               ? (access(name.c_str(), X_OK) == 0 ? name : std::string())
                               : find_on_path(name);
  if (!path.empty()) return path;
  if (requested.empty())
    throw Error("no python3 on PATH to run the demos with",
                "install CPython 3.8 or newer, or pass --python /path/to/python3");
  throw Error(fmt::format("interpreter {} not found or not executable", requested),
              "pass the path of a CPython 3.8 to 3.15 interpreter, e.g. --python /usr/bin/python3",
              kExitUsage);
}

}  // namespace

Session::Session(const std::string& python, bool attach)
    : python_(resolve_python(python)), attach_(attach) {
  scripts_ = installed_datadir() + "/demo";
  extensions_ = installed_libdir() + "/python";
  for (const std::string& f :
       {scripts_ + "/demo_common.py", extensions_ + "/_gilstat_demo.abi3.so"})
    if (access(f.c_str(), R_OK) != 0)
      throw Error(fmt::format("demo file {} is missing", f),
                  "rebuild gilstat with the Python headers installed (python3-dev), or "
                  "reinstall it");
}

const Run& Session::run_as(const std::string& script, const std::vector<std::string>& args,
                           bool attach) {
  std::string key = script;
  for (const auto& a : args) key += " " + a;
  const std::string words = key;
  if (attach != attach_) key += attach ? " (attached)" : " (launched)";
  auto it = runs_.find(key);
  if (it != runs_.end()) {
    used_.push_back(it->second.get());
    return *it->second;
  }

  LaunchOptions opts;
  opts.argv = {python_, scripts_ + "/" + script + ".py"};
  opts.argv.insert(opts.argv.end(), args.begin(), args.end());
  opts.capture_stdout = true;
  opts.stacks = StackOptions{};  // the defaults of `run`: the hog and spin demos check them
  const char* old = std::getenv("PYTHONPATH");
  opts.env = {{"PYTHONPATH", old && *old ? extensions_ + ":" + old : extensions_},
              // The scripts may live in a read-only install: no __pycache__.
              {"PYTHONDONTWRITEBYTECODE", "1"}};
  // A free-threaded build needs its GIL enabled for the demos to show
  // anything; PYTHON_GIL=1 does that there and changes nothing in a GIL
  // build (3.13+ accept it, older ones ignore it).  The user's own
  // PYTHON_GIL wins (an empty one is ignored, as CPython ignores it).
  const char* user_gil = std::getenv("PYTHON_GIL");
  const bool gil_forced = user_gil == nullptr || *user_gil == '\0';
  if (gil_forced) opts.env.emplace_back("PYTHON_GIL", "1");
  auto r = std::make_unique<Run>();
  r->script = key;
  r->command = fmt::format("{} {}", python_, words);
  r->launched = attach ? run_attached(opts) : launch(opts);
  const Outcome& o = r->launched.outcome;
  if (!o.error.empty()) throw Error(o.error, o.hint, o.code);
  // A free-threaded build runs the demos with its GIL enabled (its own
  // copy of the extension loads there); said once.  Disabled by the
  // user's PYTHON_GIL, every demo would fail for the same reason.
  if (r->launched.report.free_threaded) {
    if (!r->launched.outcome.note.empty())
      throw Error(fmt::format("{} is a free-threaded build and ran with its GIL disabled "
                              "(PYTHON_GIL={}): the demos need a GIL to measure",
                              python_, user_gil ? user_gil : ""),
                  "unset PYTHON_GIL (gilstat demo then sets PYTHON_GIL=1), or set PYTHON_GIL=1",
                  kExitNotCPython);
    if (gil_forced && !said_gil_forced_)
      std::cout << fmt::format(
                       "gilstat: {} is a free-threaded build: the demos run with "
                       "PYTHON_GIL=1, so that it has a GIL to measure\n",
                       python_)
                << std::flush;
    said_gil_forced_ = true;
  }
  if (r->launched.exit_code != 0)
    throw ScriptFailed(fmt::format("demo script {}.py exited with status {} under {}", script,
                                   r->launched.exit_code, python_),
                       "its error is printed above");
  r->truth = parse_truth(r->launched.stdout_text);
  used_.push_back(r.get());
  return *(runs_[key] = std::move(r));
}

}  // namespace gilstat::cli::demo

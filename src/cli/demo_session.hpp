// The session runner of `gilstat demo`: runs the bundled demo scripts under
// one interpreter, with the probe preloaded (as `gilstat run`) or attached
// (as `record --pid`, demo_attach.cpp), and keeps each run's report and
// ground truth.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cli/demo_truth.hpp"
#include "cli/launch.hpp"
#include "common/error.hpp"

namespace gilstat::cli::demo {

struct Run {
  LaunchResult launched;
  std::vector<Fact> truth;
  std::string script;  // with its arguments: "spin 2 1.5"
  std::string command;
  const report::Report& report() const { return launched.report; }
};

// A demo script that crashed: that demo fails, the others still run.
struct ScriptFailed : Error {
  using Error::Error;
};

// Runs the demo scripts under one interpreter; remembers each run so that
// `release` can reuse the `hold` run of the same --check as its baseline.
class Session {
 public:
  // Throws gilstat::Error when the interpreter or the demo files are missing.
  Session(const std::string& python, bool attach);

  const std::string& python() const { return python_; }
  bool attach() const { return attach_; }
  // How the probe got into the scripts, for the output.
  std::string mode() const {
    return attach_ ? "attached to the running script (as `record --pid`)"
                   : "launched under the probe (as `gilstat run`)";
  }
  // The next run() of any script starts a fresh process (a retry).
  void forget() { runs_.clear(); }
  // The runs run() returned since the last call.
  std::vector<const Run*> take_used() { return std::exchange(used_, {}); }

  // Runs script.py ARGS, or returns the run of the same words made since the
  // last forget().  Throws ScriptFailed when the script exits non-zero, and
  // gilstat::Error when the program cannot be measured at all (not CPython,
  // too old...): every demo would fail the same way.
  const Run& run(const std::string& script, const std::vector<std::string>& args) {
    return run_as(script, args, attach_);
  }
  // The same, launched (attach false) or attached whatever the session's
  // mode: a demo that compares the two.
  const Run& run_as(const std::string& script, const std::vector<std::string>& args, bool attach);

 private:
  std::string python_, scripts_, extensions_;
  bool said_gil_forced_ = false;
  bool attach_;
  std::map<std::string, std::unique_ptr<Run>> runs_;
  std::vector<const Run*> used_;
};

}  // namespace gilstat::cli::demo

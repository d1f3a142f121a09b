// `gilstat demo --attach`: a demo script started as a plain process (no
// probe preloaded), attached to the way `record --pid` attaches once it says
// it is ready, then let go and recorded until it exits.
#pragma once

#include "cli/launch.hpp"

namespace gilstat::cli {

// Makes a demo script say `gilstat-demo ready` and wait for `go` on its stdin
// before its measured work (demo_common.py, wait_for_go).
inline constexpr const char* kDemoWaitEnv = "GILSTAT_DEMO_WAIT";

// Runs opts.argv (with opts.env and kDemoWaitEnv=1, stdout captured) and
// returns what launch() would: the report of the attached window, the exit
// code and the captured stdout.  A script that exits before it is ready is
// returned unmeasured with its exit code (an error outcome if that is 0).
// Throws gilstat::Error when the attach fails; the script is then killed.
LaunchResult run_attached(const LaunchOptions& opts);

}  // namespace gilstat::cli

// Launch a program with the probe preloaded and capture its GIL traffic
// until it exits.  Shared by `run`, `record -- cmd` and `demo`.
#pragma once

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cli/live_stacks.hpp"
#include "gilstat/protocol.hpp"
#include "report/report.hpp"

namespace gilstat::cli {

struct LaunchOptions {
  std::vector<std::string> argv;
  std::string output;           // also save the recording here (may be empty)
  bool capture_stdout = false;  // collect the program's stdout instead of passing it through
  std::vector<std::pair<std::string, std::string>> env;  // extra environment
  // Called about every 100 ms while the program runs (live status lines).
  std::function<void(const struct LiveStatus&)> on_tick;
  // The held-time profile and long holds (live_stacks.hpp); nullopt: none.
  std::optional<StackOptions> stacks;
};

struct LiveStatus {
  double elapsed_s;
  uint64_t events;
  uint64_t drops;
  uint64_t bytes;  // written to the recording so far
};

// What the probe said about the process when it could not measure it.
struct Outcome {
  std::string error, hint;  // empty error: measured normally
  int code = 0;             // gilstat exit code for that case
  // Measured, but there is nothing to tabulate: a free-threaded build that
  // never enabled its GIL.  Said in one line instead of zero tables.
  std::string note;
};

struct LaunchResult {
  report::Report report;
  Outcome outcome;
  int wait_status = 0;
  int exit_code = 0;        // the program's, 128+N when killed by signal N
  std::string stdout_text;  // with capture_stdout
  std::string hog_summary;  // LaunchedStacks::summary()
  LiveStatus final_status;  // totals at the end
  // The program wrote over the shared region: outcome says what; the report
  // and the recording cover what was read before.
  bool region_corrupt = false;
};

// Throws gilstat::Error when the program cannot be started at all.
LaunchResult launch(const LaunchOptions& opts);

// What a launched program needs to load the probe: the library and the
// region it writes to (handed over as an inherited fd).
struct Preload {
  std::string probe;
  int shm_fd = -1;
};

// A started program and gilstat's ends of its pipes (-1 when not asked for).
struct Spawned {
  pid_t pid = -1;
  int stdin_fd = -1;   // with pipe_stdin
  int stdout_fd = -1;  // with opts.capture_stdout
};

// Starts opts.argv with opts.env added; with a preload the probe is loaded
// into it, without one it runs untouched.  Throws gilstat::Error (exit code
// 127) when it cannot be started.
Spawned spawn(const LaunchOptions& opts, const Preload* preload, bool pipe_stdin);

// Appends what is readable now on fd (all of it, until EOF, on a blocking fd).
void read_available(int fd, std::string* out);

// The program's exit code from its wait status: 128+N when killed by signal N.
int exit_code_of(int wait_status);

// Prints an Outcome as `gilstat: error:` + `hint:` lines.
void print_outcome(const Outcome& outcome);

// A free-threaded build that ran without its GIL the whole time; empty
// otherwise.  Shared by every command that reports on a process.
std::string gil_disabled_note(const proto::Header& header);

}  // namespace gilstat::cli

// Errors a person can act on: one line, a hint, a documented exit code.
// Thrown anywhere in the CLI, caught only in main().
#pragma once

#include <stdexcept>
#include <string>

namespace gilstat {

// Exit codes, documented in man/gilstat.1 and the README.
enum ExitCode : int {
  kExitOk = 0,
  kExitRuntime = 1,       // runtime error (I/O, corrupt file, probe failure)
  kExitUsage = 2,         // bad command line
  kExitNotCPython = 3,    // not a (supported) CPython process
  kExitPermission = 4,    // permission denied (ptrace, files)
};

class Error : public std::runtime_error {
 public:
  Error(std::string message, std::string hint = {}, int exit_code = kExitRuntime)
      : std::runtime_error(std::move(message)), hint_(std::move(hint)), exit_code_(exit_code) {}
  const std::string& hint() const { return hint_; }
  int exit_code() const { return exit_code_; }

 private:
  std::string hint_;
  int exit_code_;
};

}  // namespace gilstat

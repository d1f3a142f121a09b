// Helpers for tests that run real processes: a child with a stdout pipe that
// is always killed and reaped, interpreter lookup, ptrace availability.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace gilstat::attach::test {

// A child process whose stdout we read line by line.  The destructor kills it
// (SIGKILL) and reaps it, whatever happened in the test.
class Child {
 public:
  explicit Child(const std::vector<std::string>& argv);
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  // The next line of stdout (without '\n'), or nullopt on timeout / EOF.
  std::optional<std::string> read_line(std::chrono::milliseconds timeout);
  // Waits for the child to exit; its wait status, or nullopt on timeout.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);
  bool alive() const;

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  bool reaped_ = false;
  std::string buffer_;
};

// Path of an interpreter if it exists and is executable.
std::optional<std::string> find_executable(const std::string& path);
// nullopt when this process may ptrace its children; else why not.
std::optional<std::string> ptrace_unavailable_reason();
// The syscall number the main thread of `pid` is blocked in (/proc/PID/syscall),
// -1 when running in user space, nullopt when unknown.
std::optional<long> current_syscall(pid_t pid);
// Polls until the main thread of `pid` is blocked in syscall `nr`.
bool wait_for_syscall(pid_t pid, long nr, std::chrono::milliseconds timeout);
std::optional<std::string> read_file(const std::string& path);
// A fresh directory under /tmp, removed (with its files) by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline constexpr const char* kPython312 = "/root/.pyenv/versions/3.12.1/bin/python3.12";
inline constexpr const char* kPython313 = "/root/.pyenv/versions/3.13.0/bin/python3.13";
inline constexpr const char* kPython37 = "/root/.pyenv/versions/3.7.16/bin/python3.7";
inline constexpr const char* kPython36 = "/root/.pyenv/versions/3.6.15/bin/python3.6";
inline constexpr const char* kDebianPython311 = "/usr/bin/python3.11";
inline constexpr const char* kLibc = "/lib/x86_64-linux-gnu/libc.so.6";
inline constexpr const char* kLibPython312 =
    "/root/.pyenv/versions/3.12.1/lib/libpython3.12.so.1.0";

}  // namespace gilstat::attach::test

// Skips the current test (with the reason) unless `path` is an executable.
#define GILSTAT_REQUIRE_EXECUTABLE(path)                             \
  do {                                                               \
    if (!::gilstat::attach::test::find_executable(path)) {           \
      GTEST_SKIP() << (path) << " is not installed on this machine"; \
    }                                                                \
  } while (0)

#define GILSTAT_REQUIRE_PTRACE()                                           \
  do {                                                                     \
    if (auto why = ::gilstat::attach::test::ptrace_unavailable_reason()) { \
      GTEST_SKIP() << "ptrace is not available here: " << *why;            \
    }                                                                      \
  } while (0)

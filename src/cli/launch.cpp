// The launch machinery: fork, preload the probe, exec, drain its rings
// until the program exits.
#include "cli/launch.hpp"

#include <fcntl.h>
#include <fmt/core.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>

#include "cli/capture.hpp"
#include "common/poll_wait.hpp"
#include "common/clock.hpp"
#include "common/error.hpp"
#include "common/paths.hpp"

namespace gilstat::cli {
namespace {

pid_t g_child = -1;

// SIGTERM/SIGHUP sent to gilstat are meant for the program: pass them on and
// keep running, so the report still covers everything up to its exit.
void forward_signal(int sig) {
  if (g_child > 0) kill(g_child, sig);
}

void install_signal_handling() {
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  // Ctrl-C / Ctrl-\ reach the program directly (same process group); gilstat
  // outlives it to print the report, like time(1).
  sigaction(SIGINT, &ignore, nullptr);
  sigaction(SIGQUIT, &ignore, nullptr);
  struct sigaction fwd {};
  fwd.sa_handler = forward_signal;
  sigaction(SIGTERM, &fwd, nullptr);
  sigaction(SIGHUP, &fwd, nullptr);
}

std::string join_command(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    if (!out.empty()) out += ' ';
    const bool plain = !a.empty() && a.find_first_of(" \t\n'\"\\$`") == std::string::npos;
    out += plain ? a : "'" + a + "'";
  }
  return out;
}

[[noreturn]] void exec_child(const LaunchOptions& opts, const Preload* preload, int err_fd,
                             int in_fd, int out_fd) {
  signal(SIGINT, SIG_DFL);
  signal(SIGQUIT, SIG_DFL);
  if (preload) {
    // The region fd is the only one we hand over: it must survive exec (and
    // the bash shims' execs after it).
    fcntl(preload->shm_fd, F_SETFD, 0);
    const char* old = std::getenv("LD_PRELOAD");
    const std::string value = old && *old ? preload->probe + ":" + old : preload->probe;
    setenv("LD_PRELOAD", value.c_str(), 1);
    setenv(proto::kEnvShmFd, std::to_string(preload->shm_fd).c_str(), 1);
  }
  for (const auto& [name, value] : opts.env) setenv(name.c_str(), value.c_str(), 1);
  if (in_fd >= 0) dup2(in_fd, STDIN_FILENO);
  if (out_fd >= 0) dup2(out_fd, STDOUT_FILENO);
  std::vector<char*> args;
  for (const auto& a : opts.argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  execvp(args[0], args.data());
  const int err = errno;
  [[maybe_unused]] ssize_t n = write(err_fd, &err, sizeof(err));
  _exit(127);
}

// Waits up to timeout_ms for the child to exit; returns true with its wait
// status once it has.  A pidfd wakes us the moment it exits, so the window
// end is exact; kernels without pidfd_open fall back to short sleeps.
// *lost: it exited, but its status went to the stack reader's waitpid (it
// exited in the microseconds one of its threads was being stopped).
bool wait_child(pid_t pid, int pidfd, std::chrono::microseconds timeout, int* status, bool* lost) {
  if (pidfd >= 0) {
    struct pollfd p {
      pidfd, POLLIN, 0
    };
    poll_for(&p, 1, timeout);
  } else {
    pause_for(timeout);
  }
  for (;;) {
    const pid_t r = waitpid(pid, status, WNOHANG);
    if (r == pid) return true;
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && errno == ECHILD) {
      *status = 0;
      *lost = true;
      return true;
    }
    return false;
  }
}

Outcome outcome_of(const proto::Header& h, const std::string& program) {
  const auto status = static_cast<proto::Status>(h.status.load());
  const std::string detail(h.status_detail, strnlen(h.status_detail, sizeof(h.status_detail)));
  if (h.claim_pid.load() == 0)
    return {fmt::format("no CPython found: {} did not run a CPython interpreter", program),
            "gilstat measures CPython 3.8 to 3.15; run e.g. `gilstat run -- python3 app.py`",
            kExitNotCPython,
            {}};
  switch (status) {
    case proto::Status::Armed:
    case proto::Status::Stopped: {
      Outcome measured;
      measured.note = gil_disabled_note(h);
      if (!measured.note.empty())
        measured.hint = "set PYTHON_GIL=1 (or -X gil=1) to measure the program with its GIL";
      return measured;
    }
    case proto::Status::UnsupportedVersion:
      return {
          detail, "run the program with a CPython 3.8 to 3.15 interpreter", kExitNotCPython, {}};
    case proto::Status::NoGilFound:
      return {fmt::format("cannot locate the GIL in CPython {}: {}", h.py_version, detail),
              "this interpreter build is not in gilstat's layout tables; please report it",
              kExitNotCPython,
              {}};
    case proto::Status::HookFailed:
      return {fmt::format("cannot hook the GIL in CPython {}: {}", h.py_version, detail),
              "please report this with the output of `readelf -d` on the interpreter",
              kExitRuntime,
              {}};
    case proto::Status::HooksInstalled:
      return {"the interpreter exited before it created its GIL: nothing to report",
              {},
              kExitRuntime,
              {}};
    default:
      return {fmt::format("the probe did not start (status {})", static_cast<unsigned>(status)),
              {},
              kExitRuntime,
              {}};
  }
}

}  // namespace

Spawned spawn(const LaunchOptions& opts, const Preload* preload, bool pipe_stdin) {
  int err_pipe[2];
  if (pipe2(err_pipe, O_CLOEXEC) != 0) throw Error("pipe failed");
  int in_pipe[2] = {-1, -1}, out_pipe[2] = {-1, -1};
  if (pipe_stdin && pipe2(in_pipe, O_CLOEXEC) != 0) throw Error("pipe failed");
  if (opts.capture_stdout && pipe2(out_pipe, O_CLOEXEC) != 0) throw Error("pipe failed");
  const pid_t pid = fork();
  if (pid < 0) throw Error(fmt::format("fork failed: {}", std::strerror(errno)));
  if (pid == 0) exec_child(opts, preload, err_pipe[1], in_pipe[0], out_pipe[1]);
  close(err_pipe[1]);
  for (int fd : {in_pipe[0], out_pipe[1]})
    if (fd >= 0) close(fd);
  int exec_errno = 0;
  const bool exec_failed = read(err_pipe[0], &exec_errno, sizeof(exec_errno)) == sizeof(int);
  close(err_pipe[0]);
  if (exec_failed) {
    waitpid(pid, nullptr, 0);
    for (int fd : {in_pipe[1], out_pipe[0]})
      if (fd >= 0) close(fd);
    throw Error(fmt::format("cannot run {}: {}", opts.argv[0], std::strerror(exec_errno)),
                "check the program name and PATH", 127);
  }
  return {pid, in_pipe[1], out_pipe[0]};
}

// Appends what is readable now (all of it, until EOF, on a blocking fd).
void read_available(int fd, std::string* out) {
  char buf[65536];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n > 0) {
      out->append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return;
  }
}

int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

LaunchResult launch(const LaunchOptions& opts) {
  const std::string probe = probe_library_path();
  const proto::ClockKind clock = choose_clock();
  ClockCalibration calibration(clock);
  auto region =
      proto::ShmRegion::create(proto::make_layout(proto::kDefaultRings, proto::kDefaultRingCapacity,
                                                  proto::kDefaultNameSlots),
                               clock);
  // Created before the program starts, so a bad path fails before it runs.
  std::unique_ptr<proto::RecordingWriter> writer;
  if (!opts.output.empty()) writer = std::make_unique<proto::RecordingWriter>(opts.output);

  install_signal_handling();
  const Preload preload{probe, region.fd()};
  const Spawned child = spawn(opts, &preload, false);
  const pid_t pid = child.pid;
  g_child = pid;
  const int out_fd = child.stdout_fd;

  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  prefer_draining_thread();  // the program is started: it keeps its own priority
  Capture capture(region, writer.get());
  capture.start_taking();
  std::optional<LaunchedStacks> stacks;
  if (opts.stacks && opts.stacks->any()) {
    stacks.emplace(*opts.stacks, pid, clock);
    capture.set_event_tap(
        [&](uint32_t tid, const proto::Event& ev) { stacks->count_event(tid, ev); });
  }
  LaunchResult result;
  if (out_fd >= 0) fcntl(out_fd, F_SETFL, O_NONBLOCK);
  const uint64_t started_ns = monotonic_ns();
  uint64_t next_tick_ns = started_ns;
  bool status_lost = false;
  for (;;) {
    if (!region.corrupt()) {
      try {
        capture.poll();
      } catch (const proto::RegionCorrupt&) {
        // The program is left alone; the probe is asked to unhook.
        region.header().stop_request.store(1, std::memory_order_release);
      }
      if (stacks) stacks->tick(region, writer.get());
    }
    if (out_fd >= 0) read_available(out_fd, &result.stdout_text);
    if (opts.on_tick && monotonic_ns() >= next_tick_ns) {
      next_tick_ns += 100'000'000;
      opts.on_tick({(monotonic_ns() - started_ns) / 1e9, capture.events(),
                    capture.drops() + capture.drops_no_ring(), writer ? writer->bytes() : 0});
    }
    if (wait_child(pid, pidfd, capture.pause(), &result.wait_status, &status_lost)) break;
  }
  const uint64_t window_end = read_clock(clock);
  calibration.sample();
  if (pidfd >= 0) close(pidfd);
  g_child = -1;
  if (out_fd >= 0) {
    // Whatever the program's own children still write after it exited.
    fcntl(out_fd, F_SETFL, 0);
    read_available(out_fd, &result.stdout_text);
    close(out_fd);
  }

  result.report = capture.finish(window_end, calibration.ns_per_tick(), join_command(opts.argv));
  if (stacks) {
    stacks->finish(result.report, window_end);
    result.hog_summary = stacks->summary();
  }
  if (writer) writer->close();
  result.final_status = {(monotonic_ns() - started_ns) / 1e9, capture.events(),
                         capture.drops() + capture.drops_no_ring(), writer ? writer->bytes() : 0};
  result.exit_code = exit_code_of(result.wait_status);
  if (status_lost) {
    std::cerr << fmt::format("gilstat: warning: {} exited, its exit status is unknown\n",
                             opts.argv[0]);
    result.exit_code = 1;
  }
  if (region.corrupt()) {
    const proto::RegionCorrupt e(region.corruption(), true);
    result.region_corrupt = true;
    result.outcome = {e.what(), e.hint(), kExitRuntime, {}};
    return result;
  }
  result.outcome = outcome_of(region.header(), opts.argv[0]);
  return result;
}

std::string gil_disabled_note(const proto::Header& h) {
  if (!h.free_threaded || !h.gil_disabled_seen.load() || h.gil_enabled_now.load()) return {};
  // Start-up may enable it for a moment (modules of unknown safety load
  // with the GIL held); what matters is how the program ran.
  return fmt::format("GIL disabled (free-threaded build): CPython {} ran without its GIL{}",
                     std::string(h.py_version, strnlen(h.py_version, sizeof(h.py_version))),
                     h.gil_enabled_seen.load()
                         ? " (apart from brief enabled spells, see --json for them)"
                         : ", so no thread ever waited for it");
}

void print_outcome(const Outcome& outcome) {
  std::cerr << "gilstat: error: " << outcome.error << "\n";
  if (!outcome.hint.empty()) std::cerr << "hint: " << outcome.hint << "\n";
}

}  // namespace gilstat::cli

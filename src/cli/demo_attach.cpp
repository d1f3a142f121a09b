#include "cli/demo_attach.hpp"

#include <fcntl.h>
#include <fmt/core.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>

#include "cli/attach_session.hpp"
#include "cli/capture.hpp"
#include "cli/hog_watcher.hpp"
#include "cli/profile_sampler.hpp"
#include "common/error.hpp"
#include "report/modules.hpp"

namespace gilstat::cli {
namespace {

// Imports of a cold interpreter on a loaded machine can take seconds.
constexpr int kReadyTimeoutMs = 60'000;

// The script's process and our ends of its pipes.  Unless reaped normally
// it is killed and reaped: an error must not leave it waiting for `go`.
class Child {
 public:
  explicit Child(const Spawned& s) : s_(s) {}
  ~Child() {
    if (s_.pid > 0) {
      kill(s_.pid, SIGKILL);
      waitpid(s_.pid, nullptr, 0);
    }
    close_stdin();
    if (s_.stdout_fd >= 0) close(s_.stdout_fd);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return s_.pid; }
  int out() const { return s_.stdout_fd; }
  void close_stdin() {
    if (s_.stdin_fd >= 0) close(s_.stdin_fd);
    s_.stdin_fd = -1;
  }
  // Tells the script to start its work.  It may have died meanwhile: no
  // SIGPIPE for that, its exit status tells.
  void go() {
    struct sigaction ignore {
    }, old{};
    ignore.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ignore, &old);
    [[maybe_unused]] ssize_t n = write(s_.stdin_fd, "go\n", 3);
    sigaction(SIGPIPE, &old, nullptr);
    close_stdin();
  }
  int reap() {
    int status = 0;
    while (waitpid(s_.pid, &status, 0) < 0 && errno == EINTR) {
    }
    s_.pid = -1;
    return status;
  }

 private:
  Spawned s_;
};

bool said_ready(const std::string& out) {
  static const std::string line = "gilstat-demo ready";
  const size_t at = out.find(line);
  return at != std::string::npos && (at == 0 || out[at - 1] == '\n') &&
         out.find('\n', at) != std::string::npos;
}

// Reads the script's stdout until its ready line.  False: it closed stdout
// (exited) first.
bool wait_ready(const Child& child, const std::string& script, std::string* out) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(kReadyTimeoutMs);
  char buf[4096];
  while (!said_ready(*out)) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    struct pollfd p {
      child.out(), POLLIN, 0
    };
    if (left <= 0 || poll(&p, 1, static_cast<int>(left)) == 0)
      throw Error(fmt::format("{} did not say it was ready to be attached within {} s", script,
                              kReadyTimeoutMs / 1000),
                  "the machine may be overloaded; run the demo without --attach to compare");
    const ssize_t n = read(child.out(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    out->append(buf, static_cast<size_t>(n));
  }
  return true;
}

// The script's path (argv: python script args...), for messages.
const std::string& script_of(const LaunchOptions& opts) {
  return opts.argv.size() > 1 ? opts.argv[1] : opts.argv[0];
}

}  // namespace

LaunchResult run_attached(const LaunchOptions& launch_opts) {
  LaunchOptions opts = launch_opts;
  opts.capture_stdout = true;
  opts.env.emplace_back(kDemoWaitEnv, "1");
  Child child(spawn(opts, nullptr, true));
  LaunchResult result;
  if (!wait_ready(child, script_of(opts), &result.stdout_text)) {
    result.wait_status = child.reap();
    result.exit_code = exit_code_of(result.wait_status);
    if (result.exit_code == 0) {
      result.outcome.error =
          fmt::format("{} exited before it was ready to be attached", script_of(opts));
      result.outcome.hint =
          "the demo scripts and the gilstat binary do not match: rebuild or reinstall";
      result.outcome.code = kExitRuntime;
    }
    return result;
  }
  AttachSession session(child.pid());
  Capture capture(session.region(), nullptr);
  // The profile and long holds as `record --pid` takes them.
  const StackOptions stacks = opts.stacks.value_or(StackOptions{0, "off"});
  ProfileSampler profile(session.target(), session.clock(), stacks.profile_rate);
  HogWatcher hogs(session.target(), session.clock(), stacks.hog_threshold_ns());
  capture.set_event_tap(
      [&](uint32_t tid, const proto::Event& ev) { profile.count_events(tid, ev); });
  child.go();
  fcntl(child.out(), F_SETFL, O_NONBLOCK);
  AttachedWindow window = record_attached(session, capture, [&] {
    read_available(child.out(), &result.stdout_text);
    profile.flush(session.region(), nullptr);
    hogs.tick(session.region(), profile, nullptr);
    return true;
  });
  result.report = std::move(window.report);
  result.report.gil_profile = profile.gil_profile(result.report);
  report::attach_hogs(result.report, profile.hogs(result.report, window.window_end));
  // A free-threaded build with its GIL disabled: said as launch() says it.
  result.outcome.note = gil_disabled_note(session.region().header());
  if (session.region().corrupt()) {
    const proto::RegionCorrupt e(session.region().corruption(), true);
    result.outcome = {e.what(), e.hint(), kExitRuntime, {}};
    result.region_corrupt = true;
  }
  result.wait_status = child.reap();
  result.exit_code = exit_code_of(result.wait_status);
  fcntl(child.out(), F_SETFL, 0);
  read_available(child.out(), &result.stdout_text);
  return result;
}

}  // namespace gilstat::cli

// gilstat drain --fd FD -o FILE
//
// The reader behind the Python package's `gilstat.measure()`: the process
// that started this gilstat loaded the probe into itself
// (gilstat_probe_start) and handed over the region's fd.  We check and map
// it as an attach does, say "ready" on stdout, drain it into a recording
// until stdin becomes readable (a line, or EOF when the parent goes away),
// unhook the probe, then print the recording's `gilstat report --json` on
// stdout: the same bytes `gilstat report --json FILE` prints afterwards.
//
// The parent starts us before it arms the probe (no fork under the hooks) and
// writes "go" once it has: the region is opened only then, so that we read
// the new session, not what an earlier one left.
//
// With --hog-threshold the long holds' stacks are taken as `record --pid`
// takes them (HogWatcher: the holder stopped by ptrace for a moment, its
// Python and native frames read from outside): a child may trace its parent
// as root, or where the parent named it with PR_SET_PTRACER (the Python
// package does).  Where it cannot, the recording simply has no stacks and
// stderr says why.
#include <fmt/core.h>
#include <poll.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <iostream>
#include <memory>
#include <thread>

#include "cli/attach_session.hpp"
#include "cli/capture.hpp"
#include "cli/commands.hpp"
#include "cli/hog_watcher.hpp"
#include "cli/profile_sampler.hpp"
#include "cli/replay.hpp"
#include "common/poll_wait.hpp"
#include "common/clock.hpp"
#include "common/error.hpp"
#include "common/procfs.hpp"
#include "report/render_json.hpp"

namespace gilstat::cli {
namespace {

struct DrainOptions {
  int fd = -1;
  std::string output;
  std::string hog_threshold = "off";  // as record --pid's; off: no stacks
};

// The long-hold stack takers, or none (off, or the parent cannot be read:
// stderr says why and the drain goes on without them).
struct HoldStacks {
  std::unique_ptr<ProfileSampler> table;  // owns the recording's stack table; samples none
  std::unique_ptr<HogWatcher> watcher;
};

HoldStacks hold_stacks(pid_t parent, proto::ClockKind clock, uint64_t threshold_ns) {
  HoldStacks h;
  if (threshold_ns == 0) return h;
  try {
    const attach::PreflightResult target = attach::preflight(parent);
    h.table = std::make_unique<ProfileSampler>(target, clock, 0);
    h.watcher = std::make_unique<HogWatcher>(target, clock, threshold_ns);
  } catch (const Error& e) {
    std::cerr << fmt::format("gilstat: note: no long-hold stacks: {}\n", e.what());
    h = {};
  }
  return h;
}

// True once stdin has a line or is closed: the parent's "stop".
bool parent_says_stop(std::chrono::microseconds timeout) {
  struct pollfd p {
    STDIN_FILENO, POLLIN, 0
  };
  return poll_for(&p, 1, timeout) > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR));
}

// Asks the probe to unhook and waits (<= 1 s) for it to confirm, beating
// meanwhile (its heartbeat watch would unhook it a second later anyway).
bool stop_probe(proto::ShmRegion& region) {
  proto::Header& h = region.header();
  h.stop_request.store(1, std::memory_order_release);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  while (std::chrono::steady_clock::now() < deadline) {
    if (h.status.load() == static_cast<uint32_t>(proto::Status::Stopped)) return true;
    region.beat();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return false;
}

// Waits for the parent's "go" line; false at EOF (it gave up before arming).
bool parent_says_go() {
  std::string line;
  return static_cast<bool>(std::getline(std::cin, line)) && line == "go";
}

int drain_region(const DrainOptions& opts) {
  const uint64_t threshold_ns = parse_hog_threshold(opts.hog_threshold);
  install_stop_signals();
  if (!parent_says_go())
    throw Error("the parent process never said \"go\"",
                "`gilstat drain` is started by the Python package (gilstat.measure())", kExitUsage);
  proto::ShmRegion region = proto::ShmRegion::open_inherited(opts.fd);
  const pid_t parent = getppid();
  // Only the region of the process that started us (a value compared, never used).
  if (region.header().claim_pid.load() != static_cast<int32_t>(parent))
    throw Error(
        fmt::format("fd {} is not the probe region of process {} (our parent)", opts.fd, parent),
        "`gilstat drain` is started by the Python package (gilstat.measure())", kExitUsage);
  region.beat();
  ClockCalibration calibration(region.clock());
  HoldStacks stacks = hold_stacks(parent, region.clock(), threshold_ns);
  {
    proto::RecordingWriter writer(opts.output);
    Capture capture(region, &writer);
    prefer_draining_thread();
    capture.start_taking();
    std::cout << "ready" << std::endl;
    for (;;) {
      try {
        capture.poll();
      } catch (const proto::RegionCorrupt&) {
        break;
      }
      region.beat();
      if (stacks.watcher) stacks.watcher->tick(region, *stacks.table, &writer);
      if (stop_requested() || parent_says_stop(capture.pause())) break;
    }
    // Unhook first, then close the window (as record_attached does).
    if (!region.corrupt() && !stop_probe(region))
      std::cerr << "gilstat: warning: the probe did not confirm its stop within 1 s\n";
    const uint64_t window_end = read_clock(region.clock());
    calibration.sample();
    capture.finish(window_end, calibration.ns_per_tick(), procfs::cmdline(parent));
    writer.close();
  }
  if (region.corrupt()) throw proto::RegionCorrupt(region.corruption(), true);
  report::render_json(report_from_file(opts.output), std::cout);
  return kExitOk;
}

}  // namespace

void add_drain_command(CLI::App& app, Action& action) {
  auto opts = std::make_shared<DrainOptions>();
  CLI::App* cmd = app.add_subcommand(
      "drain", "Read the probe region handed over by fd (the Python package's reader)");
  cmd->add_option("--fd", opts->fd, "The region's fd, inherited from the parent process")
      ->required();
  cmd->add_option("-o,--output", opts->output, "Recording file to write")->required();
  cmd->add_option("--hog-threshold", opts->hog_threshold,
                  "Take the holder's stack of every GIL hold longer than this while another "
                  "thread waits (as record --pid; default off)");
  cmd->callback([opts, &action] { action = [opts] { return drain_region(*opts); }; });
}

}  // namespace gilstat::cli

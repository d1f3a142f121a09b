// ptrace-dlopen against real processes: a sleeping CPython, a busy one, the
// static Debian python3.11, a target in another mount namespace, signals and
// faults during the call, timeouts, and an exact register-restore check.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <thread>

#include "attach/injector.hpp"
#include "attach/load_library.hpp"
#include "attach/ptrace_session.hpp"
#include "common/error.hpp"
#include "test_support.hpp"

namespace gilstat::attach {
namespace {

using namespace std::chrono_literals;
using test::Child;

constexpr long kClockNanosleep = SYS_clock_nanosleep;  // Python >= 3.11 time.sleep
constexpr const char* kEntry = "gilstat_test_entry";
constexpr auto kLatencyBudget = 150ms;

// The attach latency of every successful injection, printed at the end.
void report(const char* what, const LoadResult& r) {
  std::printf("[ latency  ] %-32s attach+call %6.2f ms, thread stopped %6.2f ms (%s%s)\n", what,
              r.elapsed.count() / 1000.0, r.stopped.count() / 1000.0, r.loader.c_str(),
              r.via_memfd ? ", memfd" : "");
}

// Starts `python -c script`, waits for its "ready" line.
std::unique_ptr<Child> start(const std::string& python, const std::string& script) {
  auto child = std::make_unique<Child>(std::vector<std::string>{python, "-c", script});
  auto line = child->read_line(10s);
  EXPECT_EQ(line, "ready") << python;
  return child;
}

std::set<std::string> anonymous_executable_mappings(pid_t pid) {
  std::set<std::string> found;
  const ProcessMaps maps = ProcessMaps::read(pid);
  for (const MapEntry& e : maps.entries()) {
    if (e.executable && e.path.empty()) found.insert(to_string(e.start));
  }
  return found;
}

size_t open_fd_count(pid_t pid) {
  size_t n = 0;
  for ([[maybe_unused]] auto& entry :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
    ++n;
  }
  return n;
}

const char* kSleeper = R"(
import sys, time
print('ready', flush=True)
t0 = time.monotonic()
time.sleep(float(sys.argv[1]))
print('slept %.3f' % (time.monotonic() - t0), flush=True)
a, b = float('0.1'), float('0.2')  # at run time: literals would be folded at compile time
print(repr(a / 3), repr(a + b), repr((a * 20) ** 0.5), sum(i * i for i in range(1000)), flush=True)
)";

// What kSleeper prints last with the default (round-to-nearest) FP state.
constexpr const char* kSleeperLastLine =
    "0.03333333333333333 0.30000000000000004 1.4142135623730951 332833500";

// (a) A CPython blocked in time.sleep(3): the call returns 42, the file is
// written, and the sleep is neither cut short nor lengthened.
TEST(Inject, SleepingPythonIsNotWokenEarly) {
  GILSTAT_REQUIRE_PTRACE();
  GILSTAT_REQUIRE_EXECUTABLE(test::kPython312);
  test::TempDir dir;
  Child child({test::kPython312, "-c", kSleeper, "3"});
  ASSERT_EQ(child.read_line(10s), "ready");
  const auto started = std::chrono::steady_clock::now();
  ASSERT_TRUE(test::wait_for_syscall(child.pid(), kClockNanosleep, 2s));
  const auto before = anonymous_executable_mappings(child.pid());
  const size_t fds_before = open_fd_count(child.pid());

  const std::string out = dir.path() + "/out.txt";
  const LoadResult r = load_library_and_call(child.pid(), GILSTAT_INJECT_TARGET_LIB, kEntry, out);
  report("sleeping 3.12", r);
  EXPECT_EQ(r.return_value, 42);
  EXPECT_FALSE(r.handle.is_null());
  EXPECT_FALSE(r.via_memfd);
  EXPECT_EQ(r.loaded_as, std::filesystem::canonical(GILSTAT_INJECT_TARGET_LIB).string());
  EXPECT_EQ(test::read_file(out), out);
  EXPECT_LT(r.elapsed, kLatencyBudget);

  // Back in its sleep, our pages gone, no fd left behind.
  EXPECT_TRUE(test::wait_for_syscall(child.pid(), kClockNanosleep, 1s));
  EXPECT_EQ(anonymous_executable_mappings(child.pid()), before);
  EXPECT_EQ(open_fd_count(child.pid()), fds_before);
  auto maps = ProcessMaps::read(child.pid());
  EXPECT_TRUE(
      maps.find_object([](std::string_view b) { return b == "libgilstat_inject_target_lib.so"; }));

  auto slept = child.read_line(5s);
  const double since_start =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  ASSERT_TRUE(slept);
  const double seconds = std::stod(slept->substr(6));
  EXPECT_GE(seconds, 2.99) << *slept;
  EXPECT_LT(seconds, 3.3) << *slept;
  EXPECT_GT(since_start, 2.5);
  // FP state restored: the same digits as an undisturbed interpreter.
  EXPECT_EQ(child.read_line(5s), kSleeperLastLine);
  auto status = child.wait_exit(5s);
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
}

// (a') time.sleep(100): still asleep after the injection (no early wake-up,
// no output), and the same thread can be borrowed again.
TEST(Inject, LongSleepStaysAsleepAndReloadReusesTheHandle) {
  GILSTAT_REQUIRE_PTRACE();
  GILSTAT_REQUIRE_EXECUTABLE(test::kPython312);
  test::TempDir dir;
  Child child({test::kPython312, "-c", kSleeper, "100"});
  ASSERT_EQ(child.read_line(10s), "ready");
  ASSERT_TRUE(test::wait_for_syscall(child.pid(), kClockNanosleep, 2s));
  const LoadResult first =
      load_library_and_call(child.pid(), GILSTAT_INJECT_TARGET_LIB, kEntry, dir.path() + "/1");
  const LoadResult second =
      load_library_and_call(child.pid(), GILSTAT_INJECT_TARGET_LIB, kEntry, dir.path() + "/2");
  report("sleeping 3.12 (second load)", second);
  EXPECT_EQ(first.return_value, 42);
  EXPECT_EQ(second.return_value, 42);
  EXPECT_EQ(first.handle, second.handle);
  EXPECT_EQ(first.function, second.function);
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/1"));
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/2"));
  EXPECT_FALSE(child.read_line(1s)) << "the sleep was cut short";
  EXPECT_EQ(test::current_syscall(child.pid()), kClockNanosleep);
  EXPECT_TRUE(child.alive());
}

// (b) A CPython in a tight pure-Python loop: the result it prints afterwards
// is exactly right.
TEST(Inject, BusyPythonComputesTheRightResult) {
  GILSTAT_REQUIRE_PTRACE();
  GILSTAT_REQUIRE_EXECUTABLE(test::kPython312);
  test::TempDir dir;
  constexpr uint64_t kIterations = 6'000'000;
  auto child = start(test::kPython312, R"(
import sys
print('ready', flush=True)
s = 0
x = 0.0
for i in range()" + std::to_string(kIterations) +
                                           R"():
    s = (s * 31 + i) % 1000003
    x += 0.5
print(s, x, flush=True)
)");
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(test::current_syscall(child->pid()), -1) << "not running in user space";
  const LoadResult r =
      load_library_and_call(child->pid(), GILSTAT_INJECT_TARGET_LIB, kEntry, dir.path() + "/o");
  report("busy loop 3.12", r);
  EXPECT_EQ(r.return_value, 42);
  EXPECT_LT(r.elapsed, kLatencyBudget);
  uint64_t s = 0;
  for (uint64_t i = 0; i < kIterations; ++i) s = (s * 31 + i) % 1000003;
  auto line = child->read_line(30s);
  ASSERT_TRUE(line);
  EXPECT_EQ(*line, std::to_string(s) + " " + std::to_string(kIterations / 2) + ".0");
}

// (c) The Debian python3.11: static libpython, non-PIE executable.
TEST(Inject, StaticDebianPython311) {
  GILSTAT_REQUIRE_PTRACE();
  GILSTAT_REQUIRE_EXECUTABLE(test::kDebianPython311);
  test::TempDir dir;
  Child child({test::kDebianPython311, "-c", kSleeper, "1.5"});
  ASSERT_EQ(child.read_line(10s), "ready");
  ASSERT_TRUE(test::wait_for_syscall(child.pid(), kClockNanosleep, 2s));
  const LoadResult r =
      load_library_and_call(child.pid(), GILSTAT_INJECT_TARGET_LIB, kEntry, dir.path() + "/o");
  report("sleeping Debian 3.11 (static)", r);
  EXPECT_EQ(r.return_value, 42);
  EXPECT_LT(r.elapsed, kLatencyBudget);
  auto slept = child.read_line(5s);
  ASSERT_TRUE(slept);
  EXPECT_GE(std::stod(slept->substr(6)), 1.49) << *slept;
  EXPECT_EQ(child.read_line(5s), kSleeperLastLine);
}

// The library path is not visible in the target's mount namespace (a tmpfs
// over its /tmp): it is loaded from a memfd, and the fd is closed afterwards.
TEST(Inject, TargetInAnotherMountNamespaceGetsAMemfd) {
  GILSTAT_REQUIRE_PTRACE();
  GILSTAT_REQUIRE_EXECUTABLE(test::kPython312);
  if (!test::find_executable("/usr/bin/unshare")) GTEST_SKIP() << "no unshare(1)";
  test::TempDir dir;  // under /tmp, which the target will not see
  const std::string library = dir.path() + "/libcopy.so";
  std::filesystem::copy_file(GILSTAT_INJECT_TARGET_LIB, library);
  Child child({"/usr/bin/unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
               std::string("mount -t tmpfs gilstat-test /tmp && exec ") + test::kPython312 +
                   " -c \"$0\" 100",
               kSleeper});
  auto ready = child.read_line(10s);
  if (!ready) GTEST_SKIP() << "cannot create a mount namespace here (unshare/mount refused)";
  ASSERT_EQ(ready, "ready");
  ASSERT_TRUE(test::wait_for_syscall(child.pid(), kClockNanosleep, 2s));
  ASSERT_FALSE(std::filesystem::exists("/proc/" + std::to_string(child.pid()) + "/root" + library));
  const size_t fds_before = open_fd_count(child.pid());

  const LoadResult r = load_library_and_call(child.pid(), library, kEntry, "/tmp/inside.txt");
  report("other mount namespace 3.12", r);
  EXPECT_EQ(r.return_value, 42);
  EXPECT_TRUE(r.via_memfd);
  EXPECT_TRUE(r.loaded_as.starts_with("/proc/self/fd/")) << r.loaded_as;
  EXPECT_LT(r.elapsed, kLatencyBudget);
  // The file was written inside the target's namespace (its own /tmp).
  EXPECT_EQ(test::read_file("/proc/" + std::to_string(child.pid()) + "/root/tmp/inside.txt"),
            "/tmp/inside.txt");
  EXPECT_FALSE(std::filesystem::exists("/tmp/inside.txt"));
  EXPECT_EQ(open_fd_count(child.pid()), fds_before);
  auto maps = ProcessMaps::read(child.pid());
  EXPECT_TRUE(maps.find_object(
      [](std::string_view b) { return b.starts_with("memfd:gilstat:libcopy.so"); }));
}

TEST(Inject, ForcedMemfdOnTheSameNamespace) {
  GILSTAT_REQUIRE_PTRACE();
  GILSTAT_REQUIRE_EXECUTABLE(test::kPython312);
  test::TempDir dir;
  Child child({test::kPython312, "-c", kSleeper, "100"});
  ASSERT_EQ(child.read_line(10s), "ready");
  ASSERT_TRUE(test::wait_for_syscall(child.pid(), kClockNanosleep, 2s));
  LoadOptions options;
  options.transfer = LibraryTransfer::kMemfd;
  const LoadResult r = load_library_and_call(child.pid(), GILSTAT_INJECT_TARGET_LIB, kEntry,
                                             dir.path() + "/o", 2s, options);
  report("forced memfd 3.12", r);
  EXPECT_EQ(r.return_value, 42);
  EXPECT_TRUE(r.via_memfd);
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/o"));
}

// Signals sent while the borrowed thread runs our call are delivered after
// the detach: the Python handlers run, and the sleep then continues.
TEST(Inject, SignalsDuringTheCallAreDeliveredAfterwards) {
  GILSTAT_REQUIRE_PTRACE();
  GILSTAT_REQUIRE_EXECUTABLE(test::kPython312);
  test::TempDir dir;
  auto child = start(test::kPython312, R"(
import signal, time
signal.signal(signal.SIGUSR1, lambda *a: print('usr1', flush=True))
signal.signal(signal.SIGUSR2, lambda *a: print('usr2', flush=True))
print('ready', flush=True)
time.sleep(100)
)");
  ASSERT_TRUE(test::wait_for_syscall(child->pid(), kClockNanosleep, 2s));
  std::thread sender([pid = child->pid()] {
    std::this_thread::sleep_for(100ms);
    kill(pid, SIGUSR1);
    std::this_thread::sleep_for(20ms);
    syscall(SYS_tgkill, pid, pid, SIGUSR2);
  });
  const LoadResult r = load_library_and_call(child->pid(), GILSTAT_INJECT_TARGET_LIB, kEntry,
                                             dir.path() + "/o;sleep=300");
  sender.join();
  EXPECT_EQ(r.return_value, 42);
  EXPECT_EQ(r.redelivered_signals, (std::vector<int>{SIGUSR1, SIGUSR2}));
  std::set<std::string> lines;
  for (int i = 0; i < 2; ++i) {
    if (auto line = child->read_line(2s)) lines.insert(*line);
  }
  EXPECT_EQ(lines, (std::set<std::string>{"usr1", "usr2"}));
  EXPECT_TRUE(test::wait_for_syscall(child->pid(), kClockNanosleep, 1s)) << "not asleep again";
}

// Only the borrowed thread stops: another Python thread keeps running (and
// printing) while the call is in progress.
TEST(Inject, OtherThreadsKeepRunning) {
  GILSTAT_REQUIRE_PTRACE();
  GILSTAT_REQUIRE_EXECUTABLE(test::kPython312);
  test::TempDir dir;
  auto child = start(test::kPython312, R"(
import sys, threading, time
def tick():
    while True:
        sys.stdout.write('tick\n')  # one write per line: no interleaving
        sys.stdout.flush()
        time.sleep(0.02)
print('ready', flush=True)
threading.Thread(target=tick, daemon=True).start()
time.sleep(100)
)");
  ASSERT_TRUE(test::wait_for_syscall(child->pid(), kClockNanosleep, 2s));
  std::atomic<int> ticks{0};
  std::atomic<bool> done{false};
  std::thread reader([&] {
    while (!done) {
      if (child->read_line(50ms) == "tick") ++ticks;
    }
  });
  std::this_thread::sleep_for(50ms);
  const int before = ticks;
  const LoadResult r = load_library_and_call(child->pid(), GILSTAT_INJECT_TARGET_LIB, kEntry,
                                             dir.path() + "/o;sleep=400");
  const int during = ticks - before;
  done = true;
  reader.join();
  EXPECT_EQ(r.return_value, 42);
  EXPECT_GE(r.stopped, 400ms);
  EXPECT_GE(during, 10) << "the other thread was stopped too";
}

// A call that does not return in time is abandoned: the thread is restored,
// our pages are unmapped, the target carries on.
TEST(Inject, TimeoutRestoresTheTarget) {
  GILSTAT_REQUIRE_PTRACE();
  GILSTAT_REQUIRE_EXECUTABLE(test::kPython312);
  test::TempDir dir;
  Child child({test::kPython312, "-c", kSleeper, "2"});
  ASSERT_EQ(child.read_line(10s), "ready");
  ASSERT_TRUE(test::wait_for_syscall(child.pid(), kClockNanosleep, 2s));
  const auto before = anonymous_executable_mappings(child.pid());
  const auto started = std::chrono::steady_clock::now();
  try {
    load_library_and_call(child.pid(), GILSTAT_INJECT_TARGET_LIB, kEntry,
                          dir.path() + "/o;sleep=5000", 300ms);
    FAIL() << "expected a timeout";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("did not return in time"), std::string::npos) << e.what();
  }
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_LT(took, 1s);
  EXPECT_EQ(anonymous_executable_mappings(child.pid()), before);
  EXPECT_TRUE(test::wait_for_syscall(child.pid(), kClockNanosleep, 1s));
  auto slept = child.read_line(5s);
  ASSERT_TRUE(slept);
  EXPECT_GE(std::stod(slept->substr(6)), 1.99) << *slept;
  EXPECT_EQ(child.read_line(5s), kSleeperLastLine);
}

// A fault inside the called code is reported and not delivered: the target
// survives.
TEST(Inject, FaultInTheCallIsContained) {
  GILSTAT_REQUIRE_PTRACE();
  GILSTAT_REQUIRE_EXECUTABLE(test::kPython312);
  test::TempDir dir;
  Child child({test::kPython312, "-c", kSleeper, "1"});
  ASSERT_EQ(child.read_line(10s), "ready");
  ASSERT_TRUE(test::wait_for_syscall(child.pid(), kClockNanosleep, 2s));
  try {
    load_library_and_call(child.pid(), GILSTAT_INJECT_TARGET_LIB, kEntry, dir.path() + "/o;crash");
    FAIL() << "expected a fault";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("SEGV"), std::string::npos) << e.what();
  }
  ASSERT_TRUE(child.read_line(5s));
  EXPECT_EQ(child.read_line(5s), kSleeperLastLine);
  auto status = child.wait_exit(5s);
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
}

TEST(Inject, MissingSymbolAndMissingLibrary) {
  GILSTAT_REQUIRE_PTRACE();
  GILSTAT_REQUIRE_EXECUTABLE(test::kPython312);
  Child child({test::kPython312, "-c", kSleeper, "100"});
  ASSERT_EQ(child.read_line(10s), "ready");
  ASSERT_TRUE(test::wait_for_syscall(child.pid(), kClockNanosleep, 2s));
  try {
    load_library_and_call(child.pid(), GILSTAT_INJECT_TARGET_LIB, "no_such_entry", "x");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not export no_such_entry"), std::string::npos)
        << e.what();
  }
  test::TempDir dir;
  const std::string not_elf = dir.path() + "/not_elf.so";
  std::ofstream(not_elf) << "hello";
  try {
    load_library_and_call(child.pid(), not_elf, kEntry, "x");
    FAIL();
  } catch (const Error& e) {
    // dlerror()'s own words, read back from the target.
    EXPECT_NE(std::string(e.what()).find("dlopen(" + not_elf), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("too short"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(test::wait_for_syscall(child.pid(), kClockNanosleep, 1s));
  EXPECT_TRUE(child.alive());
}

// Exact restore of the vector registers and control words: a C++ child keeps
// a value in xmm8 while spinning; the injected function clobbers xmm8, MXCSR
// and the x87 control word; the child checks them after detach.
TEST(Inject, VectorRegistersAndControlWordsAreRestoredExactly) {
  GILSTAT_REQUIRE_PTRACE();
  test::TempDir dir;
  auto* flag = static_cast<std::atomic<int>*>(
      mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(flag, MAP_FAILED);
  new (flag) std::atomic<int>(0);
  pid_t pid = fork();
  if (pid == 0) {
    const uint64_t magic = 0x0123456789abcdef;
    uint32_t mxcsr_before, mxcsr_after;
    uint16_t fcw_before, fcw_after;
    asm volatile("movq %0, %%xmm8" ::"r"(magic) : "xmm8");
    asm volatile("stmxcsr %0" : "=m"(mxcsr_before));
    asm volatile("fnstcw %0" : "=m"(fcw_before));
    flag->store(1);
    while (flag->load(std::memory_order_relaxed) != 2) {
    }
    uint64_t seen;
    asm volatile("movq %%xmm8, %0" : "=r"(seen));
    asm volatile("stmxcsr %0" : "=m"(mxcsr_after));
    asm volatile("fnstcw %0" : "=m"(fcw_after));
    _exit(seen != magic ? 3 : mxcsr_after != mxcsr_before ? 4 : fcw_after != fcw_before ? 5 : 0);
  }
  // Kills and reaps the forked child on every path out of the test.
  struct Reap {
    pid_t pid;
    bool reaped = false;
    ~Reap() {
      if (reaped || pid <= 0) return;  // never kill(-1) or kill(0)
      kill(pid, SIGKILL);
      int s;
      waitpid(pid, &s, __WALL);
    }
  } reap{pid};
  ASSERT_GT(pid, 0) << "fork failed";
  while (flag->load() != 1) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(20ms);
  const LoadResult r =
      load_library_and_call(pid, GILSTAT_INJECT_TARGET_LIB, kEntry, dir.path() + "/o");
  report("spinning C++ child", r);
  EXPECT_EQ(r.return_value, 42);
  flag->store(2);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  reap.reaped = true;
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "3: xmm8, 4: MXCSR, 5: x87 control word not restored";
  munmap(flag, 4096);
}

// The lower layers directly: a remote getpid() and the private page layout.
TEST(Injector, RemoteSyscallAndCall) {
  GILSTAT_REQUIRE_PTRACE();
  GILSTAT_REQUIRE_EXECUTABLE(test::kPython312);
  Child child({test::kPython312, "-c", kSleeper, "100"});
  ASSERT_EQ(child.read_line(10s), "ready");
  ASSERT_TRUE(test::wait_for_syscall(child.pid(), kClockNanosleep, 2s));
  const ProcessMaps maps = ProcessMaps::read(child.pid());
  LiveRemoteMemory memory(child.pid());
  const TargetLoader loader = resolve_loader(child.pid(), maps, memory);
  const auto deadline = Clock::now() + 2s;
  PtraceSession session(child.pid(), 0, deadline);
  EXPECT_EQ(static_cast<long>(session.saved().gp.orig_rax), kClockNanosleep);
  {
    Injector injector(session, loader.syscall_instruction, 100, deadline);
    EXPECT_EQ(injector.syscall(SYS_getpid), child.pid());
    EXPECT_EQ(injector.syscall(SYS_gettid), child.pid());
    EXPECT_EQ(injector.base().value() % 4096, 0u);
    // errno lives in the thread's TLS, inside the target.
    const RemoteAddr errno_at(injector.call(loader.errno_location));
    EXPECT_TRUE(memory.read_value<int>(errno_at));
    const RemoteAddr text = injector.push_string("hello");
    EXPECT_EQ(memory.read_cstring(text, 16), "hello");
    injector.finish();
  }
  session.detach();
  EXPECT_TRUE(test::wait_for_syscall(child.pid(), kClockNanosleep, 1s));
  EXPECT_FALSE(child.read_line(300ms));
}

}  // namespace
}  // namespace gilstat::attach

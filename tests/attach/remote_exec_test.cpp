// PEP 768 remote-exec: the _Py_DebugOffsets walk over a fake process image,
// the generated script run by a real interpreter (no remote-exec involved),
// and the whole protocol against a live CPython 3.14 (skipped when the
// launcher is missing): a library loaded and called, a blocked main thread
// whose request is withdrawn, remote debugging disabled.
#include "attach/remote_exec.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "attach/preflight.hpp"
#include "attach/remote_exec_load.hpp"
#include "gilstat/cpython_layout.hpp"
#include "test_support.hpp"

namespace gilstat::attach {
namespace {

using namespace std::chrono_literals;
using test::Child;
using test::TempDir;

#ifndef GILSTAT_INTERPRETERS_DIR
#define GILSTAT_INTERPRETERS_DIR ""
#endif

std::string launcher(const char* name) {
  return std::string(GILSTAT_INTERPRETERS_DIR) + "/" + name;
}

template <class T>
void put(std::vector<std::byte>& image, size_t at, T value) {
  if (image.size() < at + sizeof(T)) image.resize(at + sizeof(T));
  std::memcpy(image.data() + at, &value, sizeof(T));
}

// A 3.14 process image: _PyRuntime (debug offsets), one interpreter, one
// thread state, at made-up addresses with made-up (but distinct) offsets.
struct FakeProcess {
  static constexpr uint64_t kRuntime = 0x10000, kInterp = 0x20000, kTstate = 0x30000;
  static constexpr uint64_t kThreadsMain = 0x58, kEnabled = 0x1230, kBreaker = 0x18,
                            kSupport = 0x200, kPending = 0, kPath = 4, kPathSize = 512;
  FakeRemoteMemory memory;

  explicit FakeProcess(int32_t enabled, uint32_t version = 0x030e0af0) {
    cpython::RemoteDebugLayout r{};
    cpython::DebugOffsetsLayout d{};
    EXPECT_TRUE(cpython::remote_debug_layout(14, &r) && cpython::debug_offsets_layout(14, &d));
    std::vector<std::byte> runtime(1024);
    std::memcpy(runtime.data(), cpython::kDebugCookie, sizeof(cpython::kDebugCookie));
    put<uint64_t>(runtime, cpython::kDebugVersionAt, version);
    put<uint64_t>(runtime, d.interpreters_head, 1000);  // offset of interpreters.head
    put<uint64_t>(runtime, r.interp_threads_main, kThreadsMain);
    put<uint64_t>(runtime, r.eval_breaker, kBreaker);
    put<uint64_t>(runtime, r.remote_debugger_support, kSupport);
    put<uint64_t>(runtime, r.remote_debugging_enabled, kEnabled);
    put<uint64_t>(runtime, r.debugger_pending_call, kPending);
    put<uint64_t>(runtime, r.debugger_script_path, kPath);
    put<uint64_t>(runtime, r.debugger_script_path_size, kPathSize);
    put<uint64_t>(runtime, 1000, kInterp);
    memory.add_region(RemoteAddr(kRuntime), runtime);
    std::vector<std::byte> interp;
    put<uint64_t>(interp, kThreadsMain, kTstate);
    put<int32_t>(interp, kEnabled, enabled);
    memory.add_region(RemoteAddr(kInterp), interp);
    std::vector<std::byte> tstate(kSupport + kPath + kPathSize);
    put<int32_t>(tstate, kSupport + kPending, 1);  // a request is pending
    memory.add_region(RemoteAddr(kTstate), tstate);
  }
};

TEST(RemoteExecLocate, FollowsDebugOffsetsToTheMainThreadState) {
  FakeProcess p(1);
  const RemoteExecTarget t =
      locate_remote_exec(p.memory, 123, RemoteAddr(FakeProcess::kRuntime), 0x030e0af0);
  EXPECT_TRUE(t.enabled);
  EXPECT_EQ(t.minor, 14);
  EXPECT_EQ(t.interpreter, RemoteAddr(FakeProcess::kInterp));
  EXPECT_EQ(t.main_tstate, RemoteAddr(FakeProcess::kTstate));
  EXPECT_EQ(t.eval_breaker, RemoteAddr(FakeProcess::kTstate + FakeProcess::kBreaker));
  EXPECT_EQ(t.pending_call, RemoteAddr(FakeProcess::kTstate + FakeProcess::kSupport));
  EXPECT_EQ(t.script_path, RemoteAddr(FakeProcess::kTstate + FakeProcess::kSupport + 4));
  EXPECT_EQ(t.script_path_size, 512u);
  EXPECT_EQ(remote_exec_pending(t, p.memory), std::optional<bool>(true));
}

TEST(RemoteExecLocate, ReportsDisabledRemoteDebugging) {
  FakeProcess p(0);
  EXPECT_FALSE(
      locate_remote_exec(p.memory, 123, RemoteAddr(FakeProcess::kRuntime), 0x030e0af0).enabled);
}

TEST(RemoteExecLocate, OlderVersionsAreAUsageError) {
  FakeProcess p(1);
  for (uint32_t version : {0x030d00f0u, 0x030c01f0u, 0x03080000u}) {
    try {
      locate_remote_exec(p.memory, 123, RemoteAddr(FakeProcess::kRuntime), version);
      ADD_FAILURE() << std::hex << version << " accepted";
    } catch (const RemoteExecNotRun& e) {
      EXPECT_EQ(e.exit_code(), kExitUsage);
      EXPECT_NE(std::string(e.what()).find("3.14"), std::string::npos) << e.what();
    }
  }
}

TEST(RemoteExecLocate, RefusesAnImageWithoutTheCookie) {
  FakeRemoteMemory empty;
  empty.add_region(RemoteAddr(FakeProcess::kRuntime), std::vector<std::byte>(1024));
  EXPECT_THROW(locate_remote_exec(empty, 123, RemoteAddr(FakeProcess::kRuntime), 0x030e0af0),
               RemoteExecNotRun);
}

// --- the script, run by a real interpreter -----------------------------------

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Writes the script into `dir` (with the claim token when `claimable`) and
// runs it with `python`; returns the result file (empty when none).
std::string run_script(const std::string& python, const TempDir& dir, bool copy, bool claimable,
                       double stale_after = 1e12) {
  const std::string library = GILSTAT_INJECT_TARGET_LIB;
  if (copy) std::filesystem::copy_file(library, dir.path() + "/library");
  if (claimable) std::ofstream(dir.path() + "/request").close();
  const std::string script = remote_exec_script(
      dir.path(), copy ? "" : library, copy ? "library" : "", "gilstat:test 'quoted' \\",
      "gilstat_test_entry", dir.path() + "/out;hello", stale_after);
  std::ofstream(dir.path() + "/attach.py") << script;
  Child child({python, dir.path() + "/attach.py"});
  EXPECT_EQ(child.wait_exit(20s), std::optional<int>(0));
  return slurp(dir.path() + "/result");
}

TEST(RemoteExecScript, LoadsTheLibraryCallsItAndAnswers) {
  GILSTAT_REQUIRE_EXECUTABLE(test::kDebianPython311);
  TempDir dir;
  const std::string answer = run_script(test::kDebianPython311, dir, false, true);
  EXPECT_EQ(answer, std::string("ok 42 ") + GILSTAT_INJECT_TARGET_LIB);
  EXPECT_EQ(slurp(dir.path() + "/out"), dir.path() + "/out;hello");
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/claimed"));
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/request"));
}

TEST(RemoteExecScript, LoadsACopyThroughAMemfd) {
  GILSTAT_REQUIRE_EXECUTABLE(test::kDebianPython311);
  TempDir dir;
  const std::string answer = run_script(test::kDebianPython311, dir, true, true);
  EXPECT_TRUE(answer.starts_with("ok 42 /proc/self/fd/")) << answer;
  EXPECT_EQ(slurp(dir.path() + "/out"), dir.path() + "/out;hello");
}

TEST(RemoteExecScript, AWithdrawnRequestDoesNothing) {
  GILSTAT_REQUIRE_EXECUTABLE(test::kDebianPython311);
  TempDir dir;
  EXPECT_EQ(run_script(test::kDebianPython311, dir, false, false), "");
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/out"));
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/claimed"));
}

TEST(RemoteExecScript, AStaleRequestCleansUpAndDoesNothing) {
  GILSTAT_REQUIRE_EXECUTABLE(test::kDebianPython311);
  TempDir dir;
  // stale_after 1 s after boot: long past.
  EXPECT_EQ(run_script(test::kDebianPython311, dir, true, true, 1.0), "");
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/out"));
  EXPECT_FALSE(std::filesystem::exists(dir.path())) << "staging files left behind";
}

// --- live CPython 3.14 -----------------------------------------------------------

// python3.14 running `body` in its main thread after printing "ready", and
// where a remote-exec request to it would go.
struct Live {
  std::unique_ptr<Child> child;
  PreflightResult process;
  std::unique_ptr<LiveRemoteMemory> memory;
  RemoteExecTarget target;
};

Live start_314(const std::string& body, bool disable = false) {
  std::vector<std::string> argv;
  if (disable) argv = {"/usr/bin/env", "PYTHON_DISABLE_REMOTE_DEBUG=1"};
  argv.push_back(launcher("python3.14"));
  argv.push_back("-c");
  argv.push_back("print('ready', flush=True)\n" + body);
  Live live;
  live.child = std::make_unique<Child>(argv);
  EXPECT_EQ(live.child->read_line(20s), std::optional<std::string>("ready"));
  live.process = preflight(live.child->pid());
  live.memory = std::make_unique<LiveRemoteMemory>(live.child->pid());
  live.target = locate_remote_exec(*live.memory, live.process.pid, live.process.py_runtime,
                                   live.process.version_hex);
  return live;
}

#define GILSTAT_REQUIRE_314()                           \
  do {                                                  \
    GILSTAT_REQUIRE_EXECUTABLE(launcher("python3.14")); \
    GILSTAT_REQUIRE_PTRACE();                           \
  } while (0)

TEST(RemoteExecLive, LoadsAndCallsALibraryInTheMainThread) {
  GILSTAT_REQUIRE_314();
  Live live = start_314("while True: pass");
  ASSERT_TRUE(live.target.enabled);
  TempDir dir;
  const RemoteExecResult r =
      remote_exec_load_and_call(live.process, live.target, GILSTAT_INJECT_TARGET_LIB,
                                "gilstat_test_entry", dir.path() + "/out;live");
  EXPECT_EQ(r.return_value, 42);
  EXPECT_FALSE(r.via_memfd);
  EXPECT_EQ(slurp(dir.path() + "/out"), dir.path() + "/out;live");
  EXPECT_EQ(remote_exec_pending(live.target, *live.memory), std::optional<bool>(false));
  // The staging directory is gone.
  const std::string staged = r.script_path.substr(0, r.script_path.rfind('/'));
  EXPECT_FALSE(std::filesystem::exists(staged)) << staged;
}

TEST(RemoteExecLive, ABlockedMainThreadGetsItsRequestWithdrawn) {
  GILSTAT_REQUIRE_314();
  Live live = start_314("import time\ntime.sleep(60)");
  TempDir dir;
  RemoteExecOptions options;
  options.safe_point_timeout = 300ms;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THROW(remote_exec_load_and_call(live.process, live.target, GILSTAT_INJECT_TARGET_LIB,
                                         "gilstat_test_entry", dir.path() + "/out", options),
               RemoteExecNotRun);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 300ms);
  // Withdrawn: no pending flag, an empty path.
  EXPECT_EQ(remote_exec_pending(live.target, *live.memory), std::optional<bool>(false));
  EXPECT_EQ(live.memory->read_value<char>(live.target.script_path), std::optional<char>('\0'));
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/out"));
}

TEST(RemoteExecLive, SeesRemoteDebuggingDisabled) {
  GILSTAT_REQUIRE_314();
  Live live = start_314("while True: pass", true);
  EXPECT_FALSE(live.target.enabled);
  EXPECT_NE(disabled_reason(live.process.pid).find("PYTHON_DISABLE_REMOTE_DEBUG"),
            std::string::npos);
}

}  // namespace
}  // namespace gilstat::attach

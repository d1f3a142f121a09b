// Pre-flight against real processes: every interpreter of the matrix, a
// non-Python process, unsupported versions, dead pids, threads, a traced
// process, and an unprivileged caller; plus the permission decision table.
#include "attach/preflight.hpp"

#include <grp.h>
#include <gtest/gtest.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <thread>

#include "attach/process_maps.hpp"
#include "attach/ptrace_session.hpp"
#include "common/error.hpp"
#include "test_support.hpp"

namespace gilstat::attach {
namespace {

using namespace std::chrono_literals;
using test::Child;

// A python that prints its sys.hexversion, then "ready", then sleeps.
std::unique_ptr<Child> start_python(const std::string& python, uint32_t* hexversion) {
  auto child = std::make_unique<Child>(std::vector<std::string>{
      python, "-c",
      "import sys, time; print(sys.hexversion); print('ready', flush=True); time.sleep(30)"});
  auto hex_line = child->read_line(10s);
  auto ready = child->read_line(10s);
  EXPECT_TRUE(hex_line && ready && *ready == "ready") << python;
  if (hex_line) *hexversion = static_cast<uint32_t>(std::stoul(*hex_line));
  return child;
}

// Runs preflight and returns the error it throws (or fails the test).
Error preflight_error(pid_t pid) {
  try {
    preflight(pid);
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "preflight(" << pid << ") succeeded";
  return Error("none");
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(Preflight, SharedLibpython312) {
  GILSTAT_REQUIRE_EXECUTABLE(test::kPython312);
  uint32_t hex = 0;
  auto child = start_python(test::kPython312, &hex);
  const PreflightResult r = preflight(child->pid());
  EXPECT_EQ(r.pid, child->pid());
  EXPECT_EQ(r.version, "3.12.1");
  EXPECT_EQ(r.version_hex, 0x030c01f0u);
  EXPECT_EQ(r.version_hex, hex);
  EXPECT_EQ(r.version_source, "Py_Version");
  EXPECT_TRUE(r.shared_libpython);
  EXPECT_EQ(r.object_path, test::kLibPython312);
  EXPECT_NE(r.load_bias, 0u);
  // _PyRuntime lies in a writable mapping of libpython.
  const ProcessMaps maps = ProcessMaps::read(child->pid());
  const MapEntry* m = maps.find(r.py_runtime);
  ASSERT_NE(m, nullptr);
  EXPECT_TRUE(m->writable);
  EXPECT_TRUE(m->path == r.object_path || m->path.empty()) << m->path;  // .data or .bss
}

TEST(Preflight, StaticDebianPython311) {
  GILSTAT_REQUIRE_EXECUTABLE(test::kDebianPython311);
  uint32_t hex = 0;
  auto child = start_python(test::kDebianPython311, &hex);
  const PreflightResult r = preflight(child->pid());
  EXPECT_FALSE(r.shared_libpython);
  EXPECT_EQ(r.object_path, test::kDebianPython311);
  EXPECT_EQ(r.load_bias, 0u);  // non-PIE
  EXPECT_EQ(r.version_hex, hex);
  EXPECT_EQ(r.version_hex >> 16, 0x030bu);
  EXPECT_EQ(r.version_source, "Py_Version");
}

// _PyRuntime is found exactly: on 3.13+ it starts with _Py_DebugOffsets,
// whose first field is the cookie "xdebugpy".
TEST(Preflight, RuntimeAddressIsExact313) {
  GILSTAT_REQUIRE_EXECUTABLE(test::kPython313);
  uint32_t hex = 0;
  auto child = start_python(test::kPython313, &hex);
  const PreflightResult r = preflight(child->pid());
  EXPECT_EQ(r.version_hex, hex);
  LiveRemoteMemory memory(child->pid());
  char cookie[8];
  ASSERT_TRUE(memory.read(r.py_runtime, std::as_writable_bytes(std::span(cookie))));
  EXPECT_EQ(std::string(cookie, 8), "xdebugpy");
}

// Every pyenv interpreter of the matrix: the version found equals the
// interpreter's own sys.hexversion (3.8-3.10 through Py_GetVersion).
TEST(Preflight, VersionMatchesSysHexversionForEveryInterpreter) {
  int tested = 0;
  for (const char* minor : {"3.8.18", "3.9.18", "3.10.13", "3.11.7", "3.12.1", "3.13.0"}) {
    const std::string version(minor);
    const std::string python =
        "/root/.pyenv/versions/" + version + "/bin/python" + version.substr(0, version.rfind('.'));
    if (!test::find_executable(python)) continue;
    SCOPED_TRACE(python);
    uint32_t hex = 0;
    auto child = start_python(python, &hex);
    const PreflightResult r = preflight(child->pid());
    EXPECT_EQ(r.version_hex, hex);
    EXPECT_EQ(r.version, version);
    EXPECT_TRUE(r.shared_libpython);
    EXPECT_EQ(r.version_source, hex < 0x030b0000 ? "Py_GetVersion" : "Py_Version");
    ++tested;
  }
  if (tested == 0) GTEST_SKIP() << "no pyenv interpreters under /root/.pyenv/versions";
}

TEST(Preflight, SleepIsNotCPython) {
  Child child({"/bin/sleep", "30"});
  ASSERT_TRUE(test::wait_for_syscall(child.pid(), 230, 5s));  // exec'd and sleeping
  const Error e = preflight_error(child.pid());
  EXPECT_EQ(e.exit_code(), kExitNotCPython);
  EXPECT_TRUE(contains(e.what(), "not a supported CPython")) << e.what();
  EXPECT_TRUE(contains(e.what(), "sleep")) << e.what();
  EXPECT_FALSE(e.hint().empty());
}

TEST(Preflight, Python37IsUnsupported) {
  GILSTAT_REQUIRE_EXECUTABLE(test::kPython37);
  uint32_t hex = 0;
  auto child = start_python(test::kPython37, &hex);
  const Error e = preflight_error(child->pid());
  EXPECT_EQ(e.exit_code(), kExitNotCPython);
  EXPECT_TRUE(contains(e.what(), "CPython 3.7.16")) << e.what();
  EXPECT_TRUE(contains(e.hint(), "3.8 to 3.15")) << e.hint();
}

TEST(Preflight, Python36HasNoRuntimeSymbol) {
  GILSTAT_REQUIRE_EXECUTABLE(test::kPython36);
  uint32_t hex = 0;
  auto child = start_python(test::kPython36, &hex);
  const Error e = preflight_error(child->pid());
  EXPECT_EQ(e.exit_code(), kExitNotCPython);
  EXPECT_TRUE(contains(e.what(), "_PyRuntime")) << e.what();
}

TEST(Preflight, DeadPid) {
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  int status;
  waitpid(pid, &status, 0);
  const Error e = preflight_error(pid);
  EXPECT_EQ(e.exit_code(), kExitRuntime);
  EXPECT_TRUE(contains(e.what(), "no process with pid")) << e.what();
}

TEST(Preflight, AThreadIdIsNotAProcess) {
  std::atomic<bool> stop{false};
  std::atomic<pid_t> live_tid{0};
  std::thread worker([&] {
    live_tid = static_cast<pid_t>(syscall(SYS_gettid));
    while (!stop) std::this_thread::sleep_for(1ms);
  });
  while (live_tid == 0) std::this_thread::sleep_for(1ms);
  const Error e = preflight_error(live_tid);
  stop = true;
  worker.join();
  EXPECT_TRUE(contains(e.what(), "is a thread of process " + std::to_string(getpid()))) << e.what();
}

TEST(Preflight, AlreadyTraced) {
  GILSTAT_REQUIRE_PTRACE();
  GILSTAT_REQUIRE_EXECUTABLE(test::kPython312);
  uint32_t hex = 0;
  auto child = start_python(test::kPython312, &hex);
  PtraceSession session(child->pid(), 0, Clock::now() + 2s);
  const Error e = preflight_error(child->pid());
  EXPECT_TRUE(contains(e.what(), "already traced by gilstat_attach")) << e.what();
  EXPECT_TRUE(contains(e.what(), "pid " + std::to_string(getpid()))) << e.what();
}

// An unprivileged caller (a forked helper that drops to nobody) gets the
// permission error, exit code 4, and the target is left alone.
TEST(Preflight, OtherUsersProcessNeedsPrivilege) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to switch to another uid";
  GILSTAT_REQUIRE_EXECUTABLE(test::kPython312);
  uint32_t hex = 0;
  auto child = start_python(test::kPython312, &hex);
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  pid_t helper = fork();
  if (helper == 0) {
    close(pipe_fds[0]);
    int code = 100;
    std::string message;
    if (setgroups(0, nullptr) == 0 && setresgid(65534, 65534, 65534) == 0 &&
        setresuid(65534, 65534, 65534) == 0) {
      try {
        preflight(child->pid());
        code = 0;
      } catch (const Error& e) {
        code = e.exit_code();
        message = std::string(e.what()) + "\n" + e.hint();
      }
    }
    (void)!write(pipe_fds[1], message.data(), message.size());
    _exit(code);
  }
  close(pipe_fds[1]);
  std::string message;
  char buffer[1024];
  for (ssize_t n; (n = read(pipe_fds[0], buffer, sizeof(buffer))) > 0;) message.append(buffer, n);
  close(pipe_fds[0]);
  int status = 0;
  waitpid(helper, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), kExitPermission) << message;
  EXPECT_TRUE(contains(message, "uid 0 and gilstat as uid 65534")) << message;
  EXPECT_TRUE(contains(message, "--cap-add SYS_PTRACE")) << message;
  EXPECT_TRUE(child->alive());
}

TEST(PermissionProblem, DecisionTable) {
  PermissionFacts same_user;
  same_user.our_uid = 1000;
  same_user.our_gid = 1000;
  std::fill(std::begin(same_user.target_uids), std::end(same_user.target_uids), 1000);
  std::fill(std::begin(same_user.target_gids), std::end(same_user.target_gids), 1000);

  EXPECT_FALSE(permission_problem(same_user));  // no Yama: classic rules
  auto f = same_user;
  f.ptrace_scope = 0;
  EXPECT_FALSE(permission_problem(f));
  f.ptrace_scope = 1;
  EXPECT_TRUE(permission_problem(f));  // not our descendant
  f.we_are_ancestor = true;
  EXPECT_FALSE(permission_problem(f));
  f.we_are_ancestor = false;
  f.cap_sys_ptrace = true;
  EXPECT_FALSE(permission_problem(f));
  f.ptrace_scope = 2;
  EXPECT_FALSE(permission_problem(f));
  f.cap_sys_ptrace = false;
  f.we_are_ancestor = true;
  EXPECT_TRUE(contains(*permission_problem(f), "ptrace_scope is 2"));
  f.cap_sys_ptrace = true;
  f.ptrace_scope = 3;
  EXPECT_TRUE(contains(*permission_problem(f), "disabled"));
  EXPECT_TRUE(contains(permission_hint(f), "reboot"));

  f = same_user;
  f.target_uids[2] = 0;  // a saved uid of root (setuid program) is not "same user"
  EXPECT_TRUE(contains(*permission_problem(f), "uid 0"));
  f.cap_sys_ptrace = true;
  EXPECT_FALSE(permission_problem(f));

  f = same_user;
  f.ptrace_scope = 1;
  const std::string hint = permission_hint(f);
  EXPECT_TRUE(contains(hint, "CAP_SYS_PTRACE"));
  EXPECT_TRUE(contains(hint, "ptrace_scope=0"));
  EXPECT_TRUE(contains(hint, "--cap-add SYS_PTRACE"));
}

TEST(PythonVersion, ParseAndFormat) {
  EXPECT_EQ(parse_python_version("3.12.1"), 0x030c01f0u);
  EXPECT_EQ(parse_python_version("3.13.0rc2"), 0x030d00c2u);
  EXPECT_EQ(parse_python_version("3.14.0a1+"), 0x030e00a1u);
  EXPECT_EQ(parse_python_version("3.8.0b4"), 0x030800b4u);
  EXPECT_EQ(parse_python_version("3.9"), 0x030900f0u);
  EXPECT_FALSE(parse_python_version("2.7.18"));
  EXPECT_FALSE(parse_python_version("3.12.1 (main, Jan 1)"));
  EXPECT_FALSE(parse_python_version("3."));
  EXPECT_FALSE(parse_python_version("%.80s"));
  EXPECT_EQ(format_python_version(0x030c01f0), "3.12.1");
  EXPECT_EQ(format_python_version(0x030d00c2), "3.13.0rc2");
  EXPECT_FALSE(is_supported_python_version(0x030710f0));
  EXPECT_TRUE(is_supported_python_version(0x030800a1));
  EXPECT_TRUE(is_supported_python_version(0x030f00f0));
  EXPECT_FALSE(is_supported_python_version(0x031000a1));
}

}  // namespace
}  // namespace gilstat::attach

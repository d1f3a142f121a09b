#include "attach/remote_exec.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/uio.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <iterator>
#include <vector>

#include "attach/preflight.hpp"
#include "attach/target_write.hpp"
#include "common/procfs.hpp"
#include "gilstat/cpython_layout.hpp"

namespace gilstat::attach {

namespace {

constexpr int32_t kPending = 1;

template <class T>
bool write_value(pid_t pid, RemoteAddr addr, const T& value) {
  return write_running_target(pid, addr, std::as_bytes(std::span(&value, 1)));
}

}  // namespace

RemoteExecTarget locate_remote_exec(const RemoteMemory& memory, pid_t pid, RemoteAddr py_runtime,
                                    uint32_t version_hex) {
  const int minor = static_cast<int>((version_hex >> 16) & 0xff);
  cpython::RemoteDebugLayout layout{};
  cpython::DebugOffsetsLayout debug{};
  if ((version_hex >> 24) != 3 || !cpython::remote_debug_layout(minor, &layout) ||
      !cpython::debug_offsets_layout(minor, &debug)) {
    throw RemoteExecNotRun(
        fmt::format("--method remote-exec needs CPython 3.14 or newer (PEP 768); process {} "
                    "runs CPython {}",
                    pid, format_python_version(version_hex)),
        "use --method ptrace (or auto, which picks ptrace for this process)", kExitUsage);
  }
  auto broken = [&](std::string_view what) {
    return RemoteExecNotRun(
        fmt::format("cannot use remote-exec in process {}: {}", pid, what),
        "use --method ptrace; if the process is still starting up, retry in a moment");
  };

  std::array<char, sizeof(cpython::kDebugCookie)> cookie{};
  if (!memory.read(py_runtime, std::as_writable_bytes(std::span(cookie))) ||
      std::memcmp(cookie.data(), cpython::kDebugCookie, cookie.size()) != 0) {
    throw broken("no _Py_DebugOffsets cookie at _PyRuntime");
  }
  auto offset = [&](uint32_t position) {
    auto value = memory.read_value<uint64_t>(py_runtime + position);
    // Offsets into interpreter and thread states are well under 1 MiB.
    if (!value || *value >= (uint64_t{1} << 20)) {
      throw broken(
          fmt::format("unreadable or implausible _Py_DebugOffsets entry at +{}", position));
    }
    return *value;
  };
  auto pointer = [&](RemoteAddr at) {
    auto value = memory.read_value<uint64_t>(at);
    return value ? RemoteAddr(*value) : RemoteAddr();
  };

  RemoteExecTarget t;
  t.pid = pid;
  t.minor = minor;
  t.interpreter = pointer(py_runtime + offset(debug.interpreters_head));
  if (t.interpreter.is_null()) throw broken("no interpreter yet");
  const auto enabled =
      memory.read_value<int32_t>(t.interpreter + offset(layout.remote_debugging_enabled));
  if (!enabled) throw broken("cannot read config.remote_debug");
  t.enabled = *enabled == 1;
  t.main_tstate = pointer(t.interpreter + offset(layout.interp_threads_main));
  if (t.main_tstate.is_null()) throw broken("the main thread has no thread state");
  const RemoteAddr support = t.main_tstate + offset(layout.remote_debugger_support);
  t.pending_call = support + offset(layout.debugger_pending_call);
  t.script_path = support + offset(layout.debugger_script_path);
  t.script_path_size = offset(layout.debugger_script_path_size);
  t.eval_breaker = t.main_tstate + offset(layout.eval_breaker);
  if (t.script_path_size < 2) throw broken("no room for a script path");
  return t;
}

std::string disabled_reason(pid_t pid) {
  for (const std::string& entry : procfs::nul_list(pid, "environ")) {
    if (entry.starts_with("PYTHON_DISABLE_REMOTE_DEBUG=") &&
        entry.size() > sizeof("PYTHON_DISABLE_REMOTE_DEBUG=") - 1) {
      return "its environment sets PYTHON_DISABLE_REMOTE_DEBUG";
    }
  }
  // The option is spelled with hyphens (`-X disable_remote_debug` is an
  // unknown X option that CPython ignores).
  for (const std::string& arg : procfs::nul_list(pid, "cmdline")) {
    if (arg == "disable-remote-debug" || arg == "-Xdisable-remote-debug") {
      return "it was started with -X disable-remote-debug";
    }
  }
  return "PYTHON_DISABLE_REMOTE_DEBUG, -X disable-remote-debug, or an interpreter built "
         "--without-remote-debug";
}

void send_remote_exec(const RemoteExecTarget& t, const RemoteMemory& memory,
                      std::string_view script_path) {
  if (script_path.size() + 1 > t.script_path_size) {
    throw RemoteExecNotRun(fmt::format("script path too long for remote-exec ({} bytes, {} max)",
                                       script_path.size(), t.script_path_size - 1));
  }
  auto pending = remote_exec_pending(t, memory);
  if (!pending) throw RemoteExecNotRun(fmt::format("cannot read process {}", t.pid));
  if (*pending) {
    throw RemoteExecNotRun(
        fmt::format("another remote-exec request is already pending in process {}", t.pid),
        "another debugger (sys.remote_exec, pdb -p) is attaching; retry when it is done, or "
        "use --method ptrace");
  }
  std::vector<std::byte> path(script_path.size() + 1, std::byte{0});
  std::memcpy(path.data(), script_path.data(), script_path.size());
  auto failed = [&] {
    return RemoteExecNotRun(
        fmt::format("cannot write into process {}: {}", t.pid, std::strerror(errno)),
        "use --method ptrace");
  };
  if (!write_running_target(t.pid, t.script_path, path)) throw failed();
  if (!write_value(t.pid, t.pending_call, kPending)) throw failed();
  auto breaker = memory.read_value<uint64_t>(t.eval_breaker);
  if (!breaker || !write_value(t.pid, t.eval_breaker, *breaker | cpython::kEvalPleaseStopBit)) {
    const RemoteExecNotRun error = failed();
    withdraw_remote_exec(t);
    throw error;
  }
}

std::optional<bool> remote_exec_pending(const RemoteExecTarget& t, const RemoteMemory& memory) {
  auto value = memory.read_value<int32_t>(t.pending_call);
  if (!value) return std::nullopt;
  return *value == kPending;
}

bool withdraw_remote_exec(const RemoteExecTarget& t) {
  const bool flag = write_value(t.pid, t.pending_call, int32_t{0});
  const bool path = write_value(t.pid, t.script_path, char{0});
  return flag && path;
}

}  // namespace gilstat::attach

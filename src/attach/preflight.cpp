#include "attach/preflight.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <map>
#include <sstream>

#include "attach/process_maps.hpp"
#include "common/error.hpp"
#include "common/procfs.hpp"

namespace gilstat::attach {

namespace {

constexpr int kCapSysPtrace = 19;
constexpr uint32_t kOldestSupported = 0x03080000;
constexpr uint32_t kFirstUnsupported = 0x03100000;  // 3.16

template <class T>
std::optional<T> parse_number(std::string_view text, int base = 10) {
  T value{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value, base);
  if (ec != std::errc() || end == text.data()) return std::nullopt;
  return value;
}

// "1000\t1000\t1000\t1000" -> first three ids.
bool parse_ids(const std::string& text, uint32_t out[3]) {
  std::istringstream in(text);
  for (int i = 0; i < 3; ++i) {
    if (!(in >> out[i])) return false;
  }
  return true;
}

std::string comm_of(pid_t pid) {
  auto text = procfs::read(pid, "comm");
  if (!text) return "?";
  while (!text->empty() && text->back() == '\n') text->pop_back();
  return *text;
}

bool has_effective_cap(int cap) {
  auto text = procfs::read(procfs::self("status"));
  if (!text) return false;
  auto fields = procfs::parse_status(*text);
  auto caps = parse_number<uint64_t>(fields["CapEff"], 16);
  return caps && ((*caps >> cap) & 1);
}

bool is_ancestor_of(pid_t pid) {
  const pid_t self = getpid();
  pid_t walker = pid;
  for (int steps = 0; walker > 1 && steps < 4096; ++steps) {
    if (walker == self) return true;
    auto text = procfs::read(walker, "status");
    if (!text) return false;
    auto fields = procfs::parse_status(*text);
    auto parent = parse_number<pid_t>(fields["PPid"]);
    if (!parent) return false;
    walker = *parent;
  }
  return walker == self;
}

Error not_cpython(std::string message) {
  return Error(std::move(message), "gilstat attaches to CPython 3.8 to 3.15 processes",
               kExitNotCPython);
}

struct FoundVersion {
  uint32_t hex;
  std::string text;
  std::string source;
};

// Py_GetVersion() of 3.8-3.10 formats "%.80s (%.80s) %.80s" with PY_VERSION
// into a static buffer; its code loads both addresses with rip-relative leas.
// The PY_VERSION literal is in the file; the buffer (filled at start-up) is in
// the target's .bss.
std::optional<FoundVersion> version_from_get_version(const MappedObject& object,
                                                     const RemoteMemory& memory) {
  auto fn = object.elf.find_dynamic_symbol("Py_GetVersion");
  if (!fn) return std::nullopt;
  const uint64_t length = std::clamp<uint64_t>(fn->size, 16, 256);
  auto code = object.elf.bytes_at_vaddr(fn->value, length);
  if (!code) code = object.elf.bytes_at_vaddr(fn->value, 16);
  if (!code) return std::nullopt;
  auto byte = [&](size_t i) { return static_cast<uint8_t>((*code)[i]); };
  std::optional<FoundVersion> from_buffer;
  for (size_t i = 0; i + 7 <= code->size(); ++i) {
    // lea disp32(%rip), %reg: REX.W(+R) 8d modrm(mod=00, rm=101)
    if ((byte(i) & 0xfb) != 0x48 || byte(i + 1) != 0x8d || (byte(i + 2) & 0xc7) != 0x05) {
      continue;
    }
    int32_t disp;
    std::memcpy(&disp, code->data() + i + 3, 4);
    const uint64_t target = fn->value + i + 7 + static_cast<int64_t>(disp);
    if (auto literal = object.elf.cstring_at_vaddr(target, 64)) {
      if (auto hex = parse_python_version(*literal)) {
        return FoundVersion{*hex, std::string(*literal), "Py_GetVersion"};
      }
    } else if (!from_buffer && object.elf.vaddr_is_loaded(target)) {
      auto text = memory.read_cstring(RemoteAddr(object.bias + target), 256);
      if (text) {
        auto word = text->substr(0, text->find(' '));
        if (auto hex = parse_python_version(word)) {
          from_buffer = FoundVersion{*hex, word, "Py_GetVersion"};
        }
      }
    }
  }
  return from_buffer;
}

// "libpython3.9.so.1.0", "python3.11", "libpython3.7m.so" -> "3.9", ...
std::optional<FoundVersion> version_from_file_name(std::string_view path) {
  std::string_view base = path.substr(path.rfind('/') + 1);
  for (std::string_view prefix : {"libpython", "python"}) {
    if (!base.starts_with(prefix)) continue;
    std::string_view rest = base.substr(prefix.size());
    size_t end = 0;
    while (end < rest.size() &&
           (std::isdigit(static_cast<unsigned char>(rest[end])) || rest[end] == '.')) {
      ++end;
    }
    std::string_view number = rest.substr(0, end);
    while (!number.empty() && number.back() == '.') number.remove_suffix(1);
    if (std::count(number.begin(), number.end(), '.') != 1) return std::nullopt;
    if (auto hex = parse_python_version(number)) {
      return FoundVersion{*hex, std::string(number), "file name"};
    }
  }
  return std::nullopt;
}

FoundVersion find_version(pid_t pid, const MappedObject& object, const RemoteMemory& memory) {
  if (auto sym = object.elf.find_dynamic_symbol("Py_Version")) {
    // const unsigned long Py_Version = PY_VERSION_HEX (3.11+): read it where
    // the target has it; the file holds the same constant.
    auto value = memory.read_value<uint64_t>(object.address_of(*sym));
    if (!value) {
      if (auto bytes = object.elf.bytes_at_vaddr(sym->value, 8)) {
        uint64_t v;
        std::memcpy(&v, bytes->data(), 8);
        value = v;
      }
    }
    if (value && (*value >> 24) == 3) {
      const auto hex = static_cast<uint32_t>(*value);
      return FoundVersion{hex, format_python_version(hex), "Py_Version"};
    }
  }
  if (auto found = version_from_get_version(object, memory)) return *found;
  if (auto found = version_from_file_name(object.path)) return *found;
  throw not_cpython(
      fmt::format("cannot tell the CPython version of process {} ({})", pid, object.path));
}

}  // namespace

std::optional<uint32_t> parse_python_version(std::string_view text) {
  auto take_number = [&](uint32_t* out) {
    size_t n = 0;
    while (n < text.size() && std::isdigit(static_cast<unsigned char>(text[n]))) ++n;
    if (n == 0 || n > 3) return false;
    *out = *parse_number<uint32_t>(text.substr(0, n));
    text.remove_prefix(n);
    return true;
  };
  uint32_t major = 0, minor = 0, micro = 0, serial = 0, level = 0xf;
  if (!take_number(&major) || major != 3) return std::nullopt;
  if (text.empty() || text.front() != '.') return std::nullopt;
  text.remove_prefix(1);
  if (!take_number(&minor) || minor > 255) return std::nullopt;
  if (!text.empty() && text.front() == '.') {
    text.remove_prefix(1);
    if (!take_number(&micro) || micro > 255) return std::nullopt;
  }
  constexpr std::pair<std::string_view, uint32_t> kLevels[] = {{"rc", 0xc}, {"a", 0xa}, {"b", 0xb}};
  for (auto [tag, value] : kLevels) {
    if (text.starts_with(tag)) {
      text.remove_prefix(tag.size());
      level = value;
      if (!take_number(&serial) || serial > 15) return std::nullopt;
      break;
    }
  }
  if (text == "+") text.remove_prefix(1);  // a development build after a release
  if (!text.empty()) return std::nullopt;
  return (major << 24) | (minor << 16) | (micro << 8) | (level << 4) | serial;
}

std::string format_python_version(uint32_t hex) {
  const uint32_t level = (hex >> 4) & 0xf;
  std::string text = fmt::format("{}.{}.{}", hex >> 24, (hex >> 16) & 0xff, (hex >> 8) & 0xff);
  if (level == 0xa) text += fmt::format("a{}", hex & 0xf);
  if (level == 0xb) text += fmt::format("b{}", hex & 0xf);
  if (level == 0xc) text += fmt::format("rc{}", hex & 0xf);
  return text;
}

bool is_supported_python_version(uint32_t hex) {
  return hex >= kOldestSupported && hex < kFirstUnsupported;
}

std::optional<std::string> permission_problem(const PermissionFacts& f) {
  if (f.ptrace_scope && *f.ptrace_scope >= 3) {
    return "kernel.yama.ptrace_scope is 3: ptrace attach is disabled on this machine";
  }
  if (f.cap_sys_ptrace) return std::nullopt;
  if (f.ptrace_scope && *f.ptrace_scope == 2) {
    return "kernel.yama.ptrace_scope is 2: only a process with CAP_SYS_PTRACE may attach";
  }
  for (int i = 0; i < 3; ++i) {
    if (f.target_uids[i] != f.our_uid) {
      return fmt::format(
          "it runs as uid {} and gilstat as uid {} (attaching to another user's "
          "process needs CAP_SYS_PTRACE)",
          f.target_uids[i], f.our_uid);
    }
    if (f.target_gids[i] != f.our_gid) {
      return fmt::format("it runs with gid {} and gilstat with gid {} (needs CAP_SYS_PTRACE)",
                         f.target_gids[i], f.our_gid);
    }
  }
  if (f.ptrace_scope && *f.ptrace_scope == 1 && !f.we_are_ancestor) {
    return "kernel.yama.ptrace_scope is 1: only the target's ancestors or a process with "
           "CAP_SYS_PTRACE may attach";
  }
  return std::nullopt;
}

std::string permission_hint(const PermissionFacts& f) {
  if (f.ptrace_scope && *f.ptrace_scope >= 3) {
    return "ptrace_scope 3 cannot be lowered until reboot; use `gilstat run` to start the "
           "program under gilstat instead";
  }
  std::string hint = "run gilstat as root (sudo) or with CAP_SYS_PTRACE";
  if (f.ptrace_scope && *f.ptrace_scope >= 1) {
    hint += fmt::format(", or lower Yama with `sudo sysctl kernel.yama.ptrace_scope=0` (now {})",
                        *f.ptrace_scope);
  }
  hint += "; in a container start it with `--cap-add SYS_PTRACE`";
  return hint;
}

void check_not_traced(pid_t pid) {
  auto text = procfs::read(pid, "status");
  if (!text) return;  // gone: the next step says so
  auto status = procfs::parse_status(*text);
  if (auto tracer = parse_number<pid_t>(status["TracerPid"]); tracer && *tracer != 0) {
    throw Error(fmt::format("process {} ({}) is already traced by {} (pid {})", pid,
                            status["Name"], comm_of(*tracer), *tracer),
                "a process can have only one tracer: detach the debugger or tracer and retry");
  }
}

PreflightResult preflight(pid_t pid, bool refuse_traced) {
  if (pid <= 0) throw Error(fmt::format("invalid pid {}", pid), {}, kExitUsage);

  // 1. The process.
  int error_number = 0;
  auto status_text = procfs::read(pid, "status", &error_number);
  if (!status_text) {
    if (error_number == ENOENT || error_number == ESRCH) {
      throw Error(fmt::format("no process with pid {}", pid),
                  "check the pid (e.g. `pgrep -a python`); in a container, use the pid as seen "
                  "from gilstat's own pid namespace");
    }
    throw Error(fmt::format("cannot read /proc/{}/status: {}", pid, std::strerror(error_number)),
                {}, error_number == EACCES ? kExitPermission : kExitRuntime);
  }
  auto status = procfs::parse_status(*status_text);
  const std::string comm = status["Name"];
  if (auto tgid = parse_number<pid_t>(status["Tgid"]); tgid && *tgid != pid) {
    throw Error(fmt::format("{} is a thread of process {} ({}), not a process", pid, *tgid, comm),
                fmt::format("use --pid {}", *tgid));
  }
  if (status["State"].starts_with("Z") || status["State"].starts_with("X")) {
    throw Error(fmt::format("process {} ({}) has exited", pid, comm));
  }

  // 2. Permission, first from what /proc says (to explain the reason), then
  //    for real: opening /proc/PID/mem runs the kernel's own ptrace-attach
  //    check (Yama and LSMs included) without touching the target.
  PermissionFacts facts;
  if (auto scope = procfs::read("/proc/sys/kernel/yama/ptrace_scope")) {
    facts.ptrace_scope = parse_number<int>(*scope);
  }
  facts.cap_sys_ptrace = has_effective_cap(kCapSysPtrace);
  facts.our_uid = geteuid();
  facts.our_gid = getegid();
  if (!parse_ids(status["Uid"], facts.target_uids) ||
      !parse_ids(status["Gid"], facts.target_gids)) {
    throw Error(fmt::format("cannot parse the credentials of process {}", pid));
  }
  facts.we_are_ancestor = is_ancestor_of(pid);
  if (auto problem = permission_problem(facts)) {
    throw Error(fmt::format("not permitted to attach to process {} ({}): {}", pid, comm, *problem),
                permission_hint(facts), kExitPermission);
  }
  if (int fd = procfs::open_mem(pid, O_RDONLY); fd >= 0) {
    close(fd);
  } else if (errno == EACCES || errno == EPERM) {
    throw Error(fmt::format("not permitted to attach to process {} ({}): the kernel refuses "
                            "(the process may be non-dumpable, e.g. setuid, or an LSM such as "
                            "AppArmor or SELinux denies ptrace)",
                            pid, comm),
                permission_hint(facts), kExitPermission);
  } else if (errno == ENOENT || errno == ESRCH) {
    throw Error(fmt::format("process {} ({}) has exited", pid, comm));
  }

  // 3. Another tracer (in the way of ptrace only).
  if (refuse_traced) check_not_traced(pid);

  // 4. CPython: the object that defines _PyRuntime (libpython3.X.so or the
  //    executable itself).  Objects named like Python are tried first.
  const ProcessMaps maps = ProcessMaps::read(pid);
  auto paths = maps.object_paths();
  std::stable_partition(paths.begin(), paths.end(), [](const std::string& p) {
    return p.substr(p.rfind('/') + 1).find("python") != std::string::npos;
  });
  std::optional<MappedObject> interpreter;
  std::optional<elf::Symbol> runtime;
  for (const std::string& path : paths) {
    auto object = open_mapped_object(pid, maps, path);
    if (!object) continue;
    if (auto sym = object->elf.find_symbol("_PyRuntime")) {
      runtime = sym;
      interpreter = std::move(object);
      break;
    }
  }
  if (!interpreter) {
    throw not_cpython(fmt::format(
        "process {} ({}) is not a supported CPython: no loaded object defines _PyRuntime "
        "(CPython 3.6 and older lack it too)",
        pid, comm));
  }

  // 5. The version.
  LiveRemoteMemory memory(pid);
  const FoundVersion version = find_version(pid, *interpreter, memory);
  if (!is_supported_python_version(version.hex)) {
    throw not_cpython(fmt::format("process {} ({}) runs CPython {}, which gilstat does not support",
                                  pid, comm, version.text));
  }

  PreflightResult result;
  result.pid = pid;
  result.object_path = interpreter->path;
  result.object_path_local = interpreter->local_path;
  // By name, not by "is it the executable": an interpreter started through an
  // explicit loader (ld-linux-x86-64.so.2 python3.14 ...) has the loader as
  // /proc/PID/exe while the interpreter is still the static python3.x.
  const std::string base = interpreter->path.substr(interpreter->path.rfind('/') + 1);
  result.shared_libpython = base.rfind("libpython", 0) == 0;
  result.version = version.text;
  result.version_hex = version.hex;
  result.version_source = version.source;
  result.load_bias = interpreter->bias;
  result.py_runtime = interpreter->address_of(*runtime);
  result.uid = facts.target_uids[1];
  result.gid = facts.target_gids[1];
  return result;
}

}  // namespace gilstat::attach

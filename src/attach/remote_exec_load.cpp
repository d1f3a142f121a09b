#include "attach/remote_exec_load.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <optional>
#include <span>
#include <sstream>
#include <thread>
#include <vector>

#include "attach/load_library.hpp"
#include "common/procfs.hpp"
#include "elf/file_bytes.hpp"

namespace gilstat::attach {

namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kScript = "attach.py";
constexpr const char* kRequest = "request";
constexpr const char* kClaimed = "claimed";
constexpr const char* kLibrary = "library";
constexpr const char* kResult = "result";
constexpr const char* kResultTmp = "result.tmp";
// A script that the target picked up claims its token at once; longer means
// it never started (an audit hook or io.open_code hook refused it).
constexpr auto kClaimTimeout = std::chrono::seconds(2);
constexpr auto kPoll = std::chrono::milliseconds(2);

// b'...' with every byte that is not plainly printable escaped.
std::string py_bytes(std::string_view bytes) {
  std::string out = "b'";
  for (unsigned char c : bytes) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
        std::strchr("/._-:+=,@ ", c)) {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("\\x{:02x}", c);
    }
  }
  return out + "'";
}

// Candidate parents of the staging directory, as the target names them.
std::vector<std::string> temporary_directories(pid_t pid) {
  std::vector<std::string> out;
  for (const std::string& entry : procfs::nul_list(pid, "environ")) {
    if (entry.starts_with("TMPDIR=/")) out.push_back(entry.substr(7));
  }
  for (const char* d : {"/tmp", "/var/tmp", "/dev/shm"}) out.emplace_back(d);
  return out;
}

// True when every component of `path` under `root` is a real directory: a
// symlink would be resolved against *our* root, not the target's.
bool plain_directory(const std::string& root, const std::string& path) {
  for (size_t slash = path.find('/', 1);; slash = path.find('/', slash + 1)) {
    struct stat st {};
    const std::string prefix = root + path.substr(0, slash);
    if (lstat(prefix.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return false;
    if (slash == std::string::npos) return true;
  }
}

// The staging directory (see the header): created through /proc/PID/root,
// files made with O_EXCL | O_NOFOLLOW relative to its fd, given to the
// target's ids, removed with everything in it on destruction.
class StagingDirectory {
 public:
  StagingDirectory(pid_t pid, uid_t uid, gid_t gid) : uid_(uid), gid_(gid) {
    const std::string root = procfs::path(pid, "root");
    std::string tried;
    for (const std::string& parent : temporary_directories(pid)) {
      if (!plain_directory(root, parent)) continue;
      std::string local = root + parent + "/gilstat-XXXXXX";
      if (!mkdtemp(local.data())) {
        tried += fmt::format("{}{}: {}", tried.empty() ? "" : ", ", parent, std::strerror(errno));
        continue;
      }
      dir_fd_ = open(local.c_str(), O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (dir_fd_ < 0) {
        rmdir(local.c_str());
        continue;
      }
      local_ = local;
      target_ = local.substr(root.size());
      return;
    }
    throw RemoteExecNotRun(
        fmt::format("no writable temporary directory in process {}'s filesystem{}", pid,
                    tried.empty() ? "" : " (" + tried + ")"),
        "use --method ptrace");
  }
  ~StagingDirectory() {
    for (const std::string& name : files_) unlinkat(dir_fd_, name.c_str(), 0);
    close(dir_fd_);
    rmdir(local_.c_str());
  }
  StagingDirectory(const StagingDirectory&) = delete;
  StagingDirectory& operator=(const StagingDirectory&) = delete;

  const std::string& target_path() const { return target_; }

  void write(const char* name, std::span<const std::byte> bytes) {
    remember(name);
    const int fd =
        openat(dir_fd_, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) fail(name, errno);
    size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        const int e = errno;
        close(fd);
        fail(name, e);
      }
      done += static_cast<size_t>(n);
    }
    const bool owned = give(fd);
    close(fd);
    if (!owned) fail(name, errno);
  }

  // Hands the directory itself to the target, last: from then on the target
  // can write in it (the claim rename, the result).
  void hand_over() {
    for (const char* name : {kClaimed, kResult, kResultTmp}) remember(name);
    if (!give(dir_fd_)) fail(".", errno);
  }

  // Unlinks `name`; false when it was not there.
  bool remove(const char* name) { return unlinkat(dir_fd_, name, 0) == 0; }
  bool exists(const char* name) const {
    struct stat st {};
    return fstatat(dir_fd_, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
  }
  std::optional<std::string> read(const char* name) const {
    const int fd = openat(dir_fd_, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return std::nullopt;
    std::string text(4096, '\0');
    const ssize_t n = ::read(fd, text.data(), text.size());
    close(fd);
    if (n < 0) return std::nullopt;
    text.resize(static_cast<size_t>(n));
    return text;
  }

 private:
  void remember(const char* name) { files_.emplace_back(name); }
  bool give(int fd) const {
    if (uid_ == geteuid() && gid_ == getegid()) return true;
    return fchown(fd, uid_, gid_) == 0;
  }
  [[noreturn]] void fail(const char* name, int error_number) const {
    throw RemoteExecNotRun(fmt::format("cannot stage {}/{} for the target: {}", local_, name,
                                       std::strerror(error_number)),
                           error_number == EPERM
                               ? "the target runs as another user: run gilstat as root, or use "
                                 "--method ptrace"
                               : "use --method ptrace");
  }

  uid_t uid_;
  gid_t gid_;
  int dir_fd_ = -1;
  std::string local_;   // through /proc/PID/root
  std::string target_;  // as the target names it
  std::vector<std::string> files_;
};

std::span<const std::byte> as_bytes(const std::string& text) {
  return std::as_bytes(std::span(text.data(), text.size()));
}

std::chrono::microseconds since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start);
}

// Waits until `done()` or the deadline; true when done.
template <class Predicate>
bool wait_for(Predicate done, Clock::time_point deadline) {
  while (true) {
    if (done()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(kPoll);
  }
}

// The monotonic offset (seconds) of a time namespace, from
// /proc/PID/timens_offsets; 0 without time namespaces.
double monotonic_offset_s(const std::string& timens_offsets) {
  std::istringstream in(procfs::read(timens_offsets).value_or(""));
  std::string clock;
  long long seconds = 0, nanoseconds = 0;
  while (in >> clock >> seconds >> nanoseconds) {
    if (clock == "monotonic" || clock == "1") return seconds + nanoseconds / 1e9;
  }
  return 0;
}

// CLOCK_MONOTONIC now, as process `pid` reads it (its time namespace may be
// offset from ours).
double target_monotonic_s(pid_t pid) {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return now.tv_sec + now.tv_nsec / 1e9 + monotonic_offset_s(procfs::path(pid, "timens_offsets")) -
         monotonic_offset_s(procfs::self("timens_offsets"));
}

// "ok <rc> <name>" or "error <what>".
RemoteExecResult parse_result(pid_t pid, const std::string& text) {
  RemoteExecResult r;
  if (text.starts_with("ok ")) {
    const char* begin = text.data() + 3;
    const char* end = text.data() + text.size();
    auto [next, ec] = std::from_chars(begin, end, r.return_value);
    if (ec == std::errc() && next < end && *next == ' ') {
      r.loaded_as = std::string(next + 1, end);
      r.via_memfd = r.loaded_as.starts_with(procfs::self("fd/"));
      return r;
    }
  }
  std::string what = text.starts_with("error ") ? text.substr(6) : text;
  while (!what.empty() && (what.back() == '\n' || what.back() == '\0')) what.pop_back();
  throw Error(fmt::format("the remote-exec attach script failed in process {}: {}", pid, what),
              "try --method ptrace");
}

}  // namespace

std::string remote_exec_script(const std::string& directory, const std::string& library,
                               const std::string& library_copy, const std::string& memfd_name,
                               const std::string& symbol, const std::string& argument,
                               double stale_after) {
  // A function, so the script leaves no name behind (CPython runs it with a
  // fresh globals dict anyway); one `try` around the work so the answer is
  // always written; nothing printed.
  return fmt::format(
      R"(# Written by gilstat (remote-exec attach); run once by this process at a
# PEP 768 safe point, then deleted.
def _gilstat_attach():
    import os
    import time
    directory = os.fsdecode({directory})
    def here(name):
        return os.path.join(directory, name)
    if time.monotonic() > {stale_after:.6f}:
        # gilstat stopped waiting long ago (it was killed): clean up, do nothing.
        for name in ('{request}', '{library_file}', '{script}'):
            try:
                os.unlink(here(name))
            except OSError:
                pass
        try:
            os.rmdir(directory)
        except OSError:
            pass
        return
    try:
        os.rename(here('{request}'), here('{claimed}'))
    except OSError:
        return  # gilstat withdrew the request
    try:
        import ctypes
        name = os.fsdecode({library})
        copy = os.fsdecode({copy})
        if copy:
            with open(here(copy), 'rb') as f:
                data = f.read()
            try:
                fd = os.memfd_create({memfd}, os.MFD_CLOEXEC | 0x10)  # MFD_EXEC
            except OSError:
                fd = os.memfd_create({memfd}, os.MFD_CLOEXEC)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                name = '/proc/self/fd/%d' % fd
                library = ctypes.CDLL(name)
            finally:
                os.close(fd)
        else:
            library = ctypes.CDLL(name)
        function = getattr(library, os.fsdecode({symbol}))
        function.restype = ctypes.c_int64
        function.argtypes = [ctypes.c_char_p]
        answer = 'ok %d %s' % (function({argument}), name)
    except Exception as e:  # not KeyboardInterrupt/SystemExit: those are the program's
        answer = 'error %s: %s' % (type(e).__name__, e)
    try:
        with open(here('{result_tmp}'), 'wb') as f:
            f.write(os.fsencode(answer))
        os.rename(here('{result_tmp}'), here('{result}'))
    except OSError:
        pass  # gilstat gave up waiting and removed the directory
_gilstat_attach()
)",
      fmt::arg("directory", py_bytes(directory)), fmt::arg("request", kRequest),
      fmt::arg("claimed", kClaimed), fmt::arg("library", py_bytes(library)),
      fmt::arg("copy", py_bytes(library_copy)), fmt::arg("memfd", py_bytes(memfd_name)),
      fmt::arg("symbol", py_bytes(symbol)), fmt::arg("argument", py_bytes(argument)),
      fmt::arg("result_tmp", kResultTmp), fmt::arg("result", kResult),
      fmt::arg("stale_after", stale_after), fmt::arg("library_file", kLibrary),
      fmt::arg("script", kScript));
}

RemoteExecResult remote_exec_load_and_call(const PreflightResult& process,
                                           const RemoteExecTarget& target,
                                           const std::string& library_path,
                                           const std::string& symbol, const std::string& argument,
                                           const RemoteExecOptions& options) {
  const auto start = Clock::now();
  const pid_t pid = target.pid;

  // What the script loads: a soname as given (reuse of a loaded library), our
  // path when the target can open that very file, else a staged copy.
  std::string library = library_path;
  std::optional<elf::FileBytes> copy;
  std::string base = library_path.substr(library_path.rfind('/') + 1);
  if (library_path.find('/') != std::string::npos) {
    char resolved[PATH_MAX];
    if (!realpath(library_path.c_str(), resolved)) {
      throw Error(fmt::format("cannot find {}: {}", library_path, std::strerror(errno)));
    }
    library = resolved;
    base = library.substr(library.rfind('/') + 1);
    if (!target_can_open(pid, library)) {
      int error_number = 0;
      copy = elf::FileBytes::open(library, &error_number);
      if (!copy)
        throw Error(fmt::format("cannot read {}: {}", library, std::strerror(error_number)));
    }
  }

  StagingDirectory staging(pid, process.uid, process.gid);
  const std::string script_path = staging.target_path() + "/" + kScript;
  // Past this point we accept no claim (safe-point wait, then the claim wait).
  const double stale_after = target_monotonic_s(pid) +
                             std::chrono::duration<double>(options.safe_point_timeout).count() +
                             std::chrono::duration<double>(kClaimTimeout).count();
  staging.write(kScript, as_bytes(remote_exec_script(staging.target_path(), copy ? "" : library,
                                                     copy ? kLibrary : "", "gilstat:" + base,
                                                     symbol, argument, stale_after)));
  if (copy) staging.write(kLibrary, copy->bytes());
  staging.write(kRequest, {});
  staging.hand_over();

  LiveRemoteMemory memory(pid);
  send_remote_exec(target, memory, script_path);
  const auto sent = Clock::now();

  // 1. The main thread picks the request up at its next safe point.
  const bool picked_up =
      wait_for([&] { return remote_exec_pending(target, memory) != std::optional<bool>(true); },
               sent + options.safe_point_timeout);
  RemoteExecResult result;
  result.until_picked_up = since(sent);
  if (!picked_up) {
    withdraw_remote_exec(target);
    if (staging.remove(kRequest)) {
      throw RemoteExecNotRun(
          fmt::format("the main thread of process {} reached no safe point in {} ms (it is "
                      "blocked outside Python bytecode: sleep, select, a lock, I/O or a long C "
                      "call); the request was withdrawn",
                      pid, options.safe_point_timeout.count()),
          "use --method ptrace (auto falls back to it by itself)");
    }
    // The script claimed the token between our deadline and the withdrawal.
  }
  if (remote_exec_pending(target, memory) == std::nullopt) {
    throw Error(fmt::format("process {} exited during the attach", pid));
  }

  // 2. The script claims its token at once; if it never does, the target
  //    refused to run it.
  if (!wait_for([&] { return !staging.exists(kRequest); }, Clock::now() + kClaimTimeout) &&
      staging.remove(kRequest)) {
    throw RemoteExecNotRun(
        fmt::format("process {} took the remote-exec request but did not run the script (an "
                    "audit hook or io.open_code hook may refuse it; its stderr may say why)",
                    pid),
        "use --method ptrace");
  }

  // 3. Its answer.
  std::optional<std::string> answer;
  if (!wait_for([&] { return (answer = staging.read(kResult)).has_value(); },
                Clock::now() + options.run_timeout)) {
    throw Error(fmt::format("the remote-exec attach script in process {} gave no answer in {} s",
                            pid, options.run_timeout.count() / 1000),
                "the process may be stuck; try --method ptrace");
  }
  RemoteExecResult parsed = parse_result(pid, *answer);
  parsed.script_path = script_path;
  parsed.until_picked_up = result.until_picked_up;
  parsed.elapsed = since(start);
  return parsed;
}

}  // namespace gilstat::attach

#include "attach/load_library.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <linux/memfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>

#include "attach/injector.hpp"
#include "attach/ptrace_session.hpp"
#include "attach/stop_point.hpp"
#include "attach/target_write.hpp"
#include "common/error.hpp"
#include "common/procfs.hpp"
#include "elf/file_bytes.hpp"

#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif

namespace gilstat::attach {

namespace {

// Looking for a safe stop point (stop_point.hpp): the pause between rounds of
// stops grows from the first to the last; the search may use this share of the
// timeout, the rest is kept for the injection.
constexpr auto kFirstPause = std::chrono::microseconds(200);
constexpr auto kMaxPause = std::chrono::milliseconds(5);
constexpr int kSearchShareOfTimeout = 3;  // of 4
// Threads other than the preferred one tried per round (services may run
// thousands): the next round takes the next ones.
constexpr size_t kOtherThreadsPerRound = 8;

bool starts_with(std::string_view s, std::string_view prefix) { return s.starts_with(prefix); }

std::string symbol_label(const elf::Symbol& sym) {
  if (sym.version.empty()) return std::string(sym.name);
  return fmt::format("{}{}{}", sym.name, sym.hidden_version ? "@" : "@@", sym.version);
}

bool is_error_return(int64_t value) { return value < 0 && value > -4096; }

struct Transfer {
  bool memfd = false;
  std::string target_path;              // what dlopen gets when !memfd
  std::optional<elf::FileBytes> bytes;  // the library, when memfd
};

Transfer plan_transfer(pid_t pid, const std::string& library_path, LibraryTransfer mode) {
  Transfer t;
  // A bare soname is the target's business: its dlopen matches it against
  // what is already loaded (how a second attach reaches the first probe).
  if (mode == LibraryTransfer::kPath && library_path.find('/') == std::string::npos) {
    t.target_path = library_path;
    return t;
  }
  char resolved[PATH_MAX];
  if (!realpath(library_path.c_str(), resolved)) {
    throw Error(fmt::format("cannot find {}: {}", library_path, std::strerror(errno)));
  }
  t.target_path = resolved;
  const bool visible = mode != LibraryTransfer::kMemfd && target_can_open(pid, resolved);
  if (mode == LibraryTransfer::kPath || (mode == LibraryTransfer::kAuto && visible)) return t;
  int error_number = 0;
  t.bytes = elf::FileBytes::open(resolved, &error_number);
  if (!t.bytes) {
    throw Error(fmt::format("cannot read {}: {}", resolved, std::strerror(error_number)));
  }
  t.memfd = true;
  return t;
}

// Creates a memfd in the target holding `bytes`; returns its fd number there.
int remote_memfd(Injector& injector, pid_t pid, std::string_view name,
                 std::span<const std::byte> bytes) {
  const RemoteAddr name_at = injector.push_string(name);
  // MFD_EXEC: with vm.memfd_noexec=1 a memfd is otherwise sealed non-exec.
  // Kernels before 6.3 reject the flag: retry without.
  int64_t fd = injector.syscall(SYS_memfd_create, {name_at.value(), MFD_CLOEXEC | MFD_EXEC});
  if (fd == -EINVAL) fd = injector.syscall(SYS_memfd_create, {name_at.value(), MFD_CLOEXEC});
  if (is_error_return(fd)) {
    throw Error(fmt::format("memfd_create in process {} failed: {}", pid,
                            std::strerror(static_cast<int>(-fd))),
                fd == -EACCES ? "vm.memfd_noexec=2 forbids executable memfds; make the library "
                                "visible inside the target's mount namespace instead"
                              : "");
  }
  injector.close_on_finish(static_cast<int>(fd));
  write_target_fd(pid, static_cast<int>(fd), bytes);
  return static_cast<int>(fd);
}

// The target's effective uid and gid from /proc/PID/status.
bool target_ids(pid_t pid, uid_t* uid, gid_t* gid) {
  std::istringstream in(procfs::read(pid, "status").value_or(""));
  std::string line;
  bool have_uid = false, have_gid = false;
  while (std::getline(in, line)) {
    unsigned long real = 0, effective = 0;
    if (std::sscanf(line.c_str(), "Uid: %lu %lu", &real, &effective) == 2) {
      *uid = static_cast<uid_t>(effective);
      have_uid = true;
    } else if (std::sscanf(line.c_str(), "Gid: %lu %lu", &real, &effective) == 2) {
      *gid = static_cast<gid_t>(effective);
      have_gid = true;
    }
  }
  return have_uid && have_gid;
}

bool permits(const struct stat& st, uid_t uid, gid_t gid, mode_t user, mode_t group, mode_t other) {
  if (st.st_uid == uid) return st.st_mode & user;
  if (st.st_gid == gid) return st.st_mode & group;
  return st.st_mode & other;
}

}  // namespace

bool target_can_open(pid_t pid, const std::string& resolved_path) {
  struct stat ours {
  }, theirs{};
  const std::string root = procfs::path(pid, "root");
  if (stat(resolved_path.c_str(), &ours) != 0 ||
      stat((root + resolved_path).c_str(), &theirs) != 0 || ours.st_dev != theirs.st_dev ||
      ours.st_ino != theirs.st_ino) {
    return false;
  }
  uid_t uid = 0;
  gid_t gid = 0;
  if (!target_ids(pid, &uid, &gid)) return false;
  if (uid == 0) return true;
  if (!permits(theirs, uid, gid, S_IRUSR, S_IRGRP, S_IROTH)) return false;
  for (size_t slash = resolved_path.rfind('/'); slash != std::string::npos && slash > 0;
       slash = resolved_path.rfind('/', slash - 1)) {
    struct stat dir {};
    if (stat((root + resolved_path.substr(0, slash)).c_str(), &dir) != 0 ||
        !permits(dir, uid, gid, S_IXUSR, S_IXGRP, S_IXOTH)) {
      return false;
    }
  }
  return true;
}

TargetLoader resolve_loader(pid_t pid, const ProcessMaps& maps, const RemoteMemory& memory) {
  auto libc_path = maps.find_object([](std::string_view b) { return is_glibc_libc(b); });
  auto musl_path = maps.find_object([](std::string_view b) { return is_musl(b); });
  if (!libc_path && !musl_path) {
    throw Error(fmt::format("process {} has no shared C library mapped (statically linked?)", pid),
                "gilstat attaches to dynamically linked interpreters only");
  }
  const std::string& path = libc_path ? *libc_path : *musl_path;
  std::string why;
  auto libc = open_mapped_object(pid, maps, path, &why);
  if (!libc) throw Error(fmt::format("cannot read the target's C library: {}", why));

  TargetLoader loader;
  loader.dlopen_flags = RTLD_NOW;
  auto address = [](const MappedObject& o, const elf::Symbol& s) { return o.address_of(s); };

  auto dlopen_sym = libc->elf.find_dynamic_symbol("dlopen");
  auto dlsym_sym = libc->elf.find_dynamic_symbol("dlsym");
  if (dlopen_sym && dlsym_sym) {
    // glibc >= 2.34 or musl.
    loader.dlopen = address(*libc, *dlopen_sym);
    loader.dlsym = address(*libc, *dlsym_sym);
    if (auto s = libc->elf.find_dynamic_symbol("dlerror")) loader.dlerror = address(*libc, *s);
    loader.description = fmt::format("{} in {}", symbol_label(*dlopen_sym), path);
  } else if (auto libdl_path = maps.find_object([](std::string_view b) {
               return starts_with(b, "libdl.so") || starts_with(b, "libdl-");
             })) {
    // glibc < 2.34 with libdl loaded (CPython links it).
    auto libdl = open_mapped_object(pid, maps, *libdl_path, &why);
    if (!libdl) throw Error(fmt::format("cannot read the target's libdl: {}", why));
    auto o = libdl->elf.find_dynamic_symbol("dlopen");
    auto s = libdl->elf.find_dynamic_symbol("dlsym");
    if (!o || !s) throw Error(fmt::format("{} does not export dlopen/dlsym", *libdl_path));
    loader.dlopen = address(*libdl, *o);
    loader.dlsym = address(*libdl, *s);
    if (auto e = libdl->elf.find_dynamic_symbol("dlerror")) loader.dlerror = address(*libdl, *e);
    loader.description = fmt::format("{} in {}", symbol_label(*o), *libdl_path);
  } else {
    // glibc < 2.34 without libdl: the private entry points libc uses itself.
    auto o = libc->elf.find_dynamic_symbol("__libc_dlopen_mode");
    auto s = libc->elf.find_dynamic_symbol("__libc_dlsym");
    if (!o || !s) {
      throw Error(
          fmt::format("cannot find dlopen in process {}: {} exports neither dlopen nor "
                      "__libc_dlopen_mode",
                      pid, path));
    }
    loader.dlopen = address(*libc, *o);
    loader.dlsym = address(*libc, *s);
    loader.description = fmt::format("{} in {}", symbol_label(*o), path);
  }
  if (auto e = libc->elf.find_dynamic_symbol("__errno_location")) {
    loader.errno_location = address(*libc, *e);
  }
  auto insn = find_syscall_instruction(memory, maps, path);
  if (!insn) {
    throw Error(
        fmt::format("no syscall instruction found in the text of {} in process {}", path, pid));
  }
  loader.syscall_instruction = *insn;
  return loader;
}

namespace {

// The threads of `pid` other than `skip` that could stop at once (not in
// uninterruptible sleep, stopped, or exiting: seizing those could leave them
// waiting for us).
std::vector<pid_t> other_threads(pid_t pid, pid_t skip) {
  std::vector<pid_t> tids;
  for (const pid_t tid : procfs::task_ids(pid)) {
    if (tid == skip) continue;
    const auto state = procfs::task_state(pid, tid);
    if (state == 'R' || state == 'S') tids.push_back(tid);
  }
  return tids;
}

struct Borrowed {
  std::unique_ptr<PtraceSession> session;
  int stops = 0;
};

// Stops threads of `pid` (the preferred one first, then the others) at
// growing intervals until one is at a safe stop point; every refused stop
// leaves its thread exactly as it was.  Throws gilstat::Error ("busy") when
// none was safe before `search_deadline`.
Borrowed borrow_at_safe_point(pid_t pid, pid_t preferred, bool only_preferred,
                              const ProcessMaps& maps, const RemoteMemory& memory,
                              Clock::time_point search_deadline, Clock::time_point deadline) {
  const UnsafeCode unsafe = UnsafeCode::of_process(pid, maps);
  StackUnwinder unwinder(maps, memory);
  const auto started = Clock::now();
  Borrowed b;
  std::vector<pid_t> others;
  size_t next_other = 0;
  std::string last_refusal;
  auto pause = kFirstPause;
  for (int round = 0;; ++round) {
    std::vector<pid_t> candidates{preferred};
    if (round == 1 && !only_preferred) others = other_threads(pid, preferred);
    for (size_t i = 0; round > 0 && i < std::min(kOtherThreadsPerRound, others.size()); ++i) {
      candidates.push_back(others[next_other++ % others.size()]);
    }
    for (const pid_t tid : candidates) {
      std::unique_ptr<PtraceSession> session;
      try {
        session = std::make_unique<PtraceSession>(pid, tid, deadline);
      } catch (const Error& e) {
        if (tid == preferred || e.exit_code() != kExitRuntime) throw;
        continue;  // that thread ended meanwhile (nothing was changed in it)
      }
      ++b.stops;
      const StackWalk walk = unwinder.unwind(session->tid());
      const StopVerdict verdict = judge_stop_point(unsafe, maps, memory, session->saved().gp, walk);
      if (verdict.safe) {
        b.session = std::move(session);
        return b;
      }
      last_refusal = fmt::format("thread {} in {}", tid, verdict.where);
      // ~PtraceSession: the thread goes on untouched.
    }
    if (Clock::now() + pause >= search_deadline) break;
    std::this_thread::sleep_for(pause);
    pause = std::min<std::chrono::microseconds>(pause * 2, kMaxPause);
  }
  const auto waited =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count();
  throw Error(
      "the target is busy in the dynamic loader or allocator; try again",
      fmt::format("{} stops of {} thread(s) over {} ms were all unsafe (the last: {}); "
                  "process {} was left untouched",
                  b.stops, only_preferred ? 1 : others.size() + 1, waited, last_refusal, pid));
}

}  // namespace

LoadResult load_library_and_call(pid_t pid, const std::string& library_path,
                                 const std::string& symbol, const std::string& argument,
                                 std::chrono::milliseconds timeout, const LoadOptions& options) {
  const auto start = Clock::now();
  const auto deadline = start + timeout;
  LoadResult result;

  // Everything that does not need the thread stopped happens first.
  const ProcessMaps maps = ProcessMaps::read(pid);
  LiveRemoteMemory memory(pid);
  const TargetLoader loader = resolve_loader(pid, maps, memory);
  result.loader = loader.description;
  Transfer transfer = plan_transfer(pid, library_path, options.transfer);
  const std::string basename = transfer.target_path.substr(transfer.target_path.rfind('/') + 1);
  const size_t data_size =
      transfer.target_path.size() + symbol.size() + argument.size() + basename.size() + 256;

  const auto search_deadline = start + (deadline - start) * kSearchShareOfTimeout / 4;
  Borrowed borrowed =
      borrow_at_safe_point(pid, options.tid == 0 ? pid : options.tid, options.tid != 0, maps,
                           memory, search_deadline, deadline);
  PtraceSession& session = *borrowed.session;
  result.borrowed_tid = session.tid();
  result.stops = borrowed.stops;
  const auto stopped_at = Clock::now();

  {
    Injector injector(session, loader.syscall_instruction, data_size, deadline);
    if (!loader.errno_location.is_null()) injector.preserve_errno(loader.errno_location, memory);

    if (transfer.memfd) {
      const int fd = remote_memfd(injector, pid, "gilstat:" + basename, transfer.bytes->bytes());
      result.loaded_as = procfs::self(fmt::format("fd/{}", fd));
      result.via_memfd = true;
    } else {
      result.loaded_as = transfer.target_path;
    }
    const RemoteAddr path_at = injector.push_string(result.loaded_as);
    const RemoteAddr symbol_at = injector.push_string(symbol);
    const RemoteAddr argument_at = injector.push_string(argument);

    result.handle = RemoteAddr(injector.call(
        loader.dlopen, {path_at.value(), static_cast<uint64_t>(loader.dlopen_flags)}));
    if (result.handle.is_null()) {
      std::string reason = "no dlerror available";
      if (!loader.dlerror.is_null()) {
        const RemoteAddr message(injector.call(loader.dlerror));
        reason = message.is_null() ? "dlerror() returned nothing"
                                   : memory.read_cstring(message, 4096).value_or("?");
      }
      throw Error(
          fmt::format("dlopen({}) in process {} failed: {}", result.loaded_as, pid, reason));
    }
    result.function =
        RemoteAddr(injector.call(loader.dlsym, {result.handle.value(), symbol_at.value()}));
    if (result.function.is_null()) {
      throw Error(fmt::format("{} does not export {} (dlsym in process {} returned NULL)",
                              library_path, symbol, pid));
    }
    result.return_value =
        static_cast<int64_t>(injector.call(result.function, {argument_at.value()}));
    injector.set_deadline(std::max(deadline, Clock::now() + std::chrono::milliseconds(500)));
    injector.finish();
  }
  for (const siginfo_t& info : session.deferred_signals()) {
    result.redelivered_signals.push_back(info.si_signo);
  }
  session.detach();
  const auto end = Clock::now();
  result.stopped = std::chrono::duration_cast<std::chrono::microseconds>(end - stopped_at);
  result.elapsed = std::chrono::duration_cast<std::chrono::microseconds>(end - start);
  return result;
}

}  // namespace gilstat::attach

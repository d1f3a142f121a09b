#include "pyruntime/thread_gil_state.hpp"

#include <fmt/format.h>

#include <charconv>
#include <chrono>
#include <thread>

#include "common/procfs.hpp"

namespace gilstat::pyruntime {

namespace {

constexpr int64_t kFutex = 202;  // x86_64
// A timed futex wait that a ptrace stop (another dump's) interrupted goes on
// as restart_syscall, its registers, hence its futex address, unchanged.
constexpr int64_t kRestartSyscall = 219;
// A waiter in take_gil wakes every switch interval and goes back to sleep;
// on a busy machine it can then sit in the run queue for a while.  A Python
// thread seen "running" while its GIL is held by another is re-read, a
// millisecond apart, within one budget for the whole dump.
constexpr int kRetryBudgetMs = 50;

std::optional<uint64_t> number(std::string_view word, int base) {
  if (base == 16) {
    if (!word.starts_with("0x")) return std::nullopt;
    word.remove_prefix(2);
  }
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(word.data(), word.data() + word.size(), v, base);
  if (ec != std::errc() || end != word.data() + word.size()) return std::nullopt;
  return v;
}

}  // namespace

std::optional<SyscallState> read_syscall(pid_t pid, pid_t tid) {
  auto text = procfs::read(pid, fmt::format("task/{}/syscall", tid));
  if (!text) return std::nullopt;
  return parse_syscall(*text);
}

std::optional<SyscallState> read_syscall_stopped(pid_t pid, pid_t tid) {
  auto sc = read_syscall(pid, tid);
  if (sc && !sc->running && !sc->number) sc->running = true;
  return sc;
}

std::optional<SyscallState> parse_syscall(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  SyscallState s;
  if (text == "running") {
    s.running = true;
    return s;
  }
  const size_t space = text.find(' ');
  const std::string_view first = text.substr(0, space);
  if (first == "-1") return s;  // blocked outside a system call
  auto nr = number(first, 10);
  if (!nr || space == std::string_view::npos) return std::nullopt;
  std::string_view rest = text.substr(space + 1);
  auto arg = number(rest.substr(0, rest.find(' ')), 16);
  if (!arg) return std::nullopt;
  s.number = static_cast<int64_t>(*nr);
  s.arg0 = *arg;
  return s;
}

const char* gil_role_name(GilRole role) {
  switch (role) {
    case GilRole::kHolds:
      return "holds";
    case GilRole::kWaits:
      return "waits";
    case GilRole::kNoGil:
      return "gil-disabled";
    case GilRole::kNeither:
      break;
  }
  return "neither";
}

std::vector<ThreadGilState> gil_states(pid_t pid, const std::vector<pid_t>& tids,
                                       const PySnapshot& snapshot,
                                       const std::map<pid_t, SyscallState>& seen) {
  std::vector<ThreadGilState> out;
  int retries_left = kRetryBudgetMs;
  for (pid_t tid : tids) {
    ThreadGilState st;
    st.tid = tid;
    const PyThread* py = nullptr;
    for (const PyThread& t : snapshot.threads)
      if (t.tid == tid) py = &t;
    for (size_t i = 0; py && i < snapshot.gils.size(); ++i) {
      const PyGil& g = snapshot.gils[i];
      if (g.locked == 1 && g.last_holder == py->tstate) st.role = GilRole::kHolds, st.gil = i;
    }
    const auto was = seen.find(tid);
    std::optional<SyscallState> sc =
        was != seen.end() ? std::optional(was->second) : read_syscall(pid, tid);
    bool gil_held = false;
    for (const PyGil& g : snapshot.gils) gil_held |= g.locked == 1;
    while (was == seen.end() && py && gil_held && st.role != GilRole::kHolds && sc && sc->running &&
           retries_left-- > 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      sc = read_syscall(pid, tid);
    }
    if (sc) {
      if (sc->running)
        st.syscall = "running";
      else if (!sc->number)
        st.syscall = "blocked (not in a system call)";
      else if (*sc->number == kFutex)
        st.syscall = fmt::format("futex 0x{:x}", sc->arg0);
      else
        st.syscall = fmt::format("syscall {}", *sc->number);
    }
    if (st.role != GilRole::kHolds && sc &&
        (sc->number == kFutex || sc->number == kRestartSyscall)) {
      for (size_t i = 0; i < snapshot.gils.size(); ++i) {
        const PyGil& g = snapshot.gils[i];
        const attach::RemoteAddr a(sc->arg0);
        const bool on_cond = a >= g.cond && a - g.cond < g.cond_size;
        const bool on_mutex = a >= g.mutex && a - g.mutex < g.mutex_size;
        if (on_cond || on_mutex) st.role = GilRole::kWaits, st.gil = i;
      }
    }
    if (st.role == GilRole::kNeither && py && !snapshot.gils.empty()) {
      for (size_t i = 0; i < snapshot.gils.size(); ++i)
        if (snapshot.gils[i].enabled == 0) st.role = GilRole::kNoGil, st.gil = i;
    }
    out.push_back(std::move(st));
  }
  return out;
}

}  // namespace gilstat::pyruntime

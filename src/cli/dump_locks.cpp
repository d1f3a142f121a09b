#include "cli/dump_locks.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "common/procfs.hpp"

namespace gilstat::cli {
namespace {

using pyruntime::GilRole;

constexpr int64_t kFutex = 202;  // x86_64
// glibc's pthread_mutex_t: int __lock; unsigned __count; int __owner (the
// owner's tid while locked), on every 64-bit target glibc supports.
constexpr uint64_t kMutexOwnerOffset = 8;

bool mentions(const std::vector<std::string>& frames, std::initializer_list<const char*> names) {
  // The few innermost frames: the lock call sits right above the futex wait.
  for (size_t i = 0; i < frames.size() && i < 6; ++i)
    for (const char* n : names)
      if (frames[i].find(n) != std::string::npos) return true;
  return false;
}

const LockThread* find(const std::vector<LockThread>& threads, pid_t tid) {
  for (const LockThread& t : threads)
    if (t.tid == tid) return &t;
  return nullptr;
}

std::string label(const LockThread& t) { return fmt::format("{} (tid {})", t.name, t.tid); }

}  // namespace

std::vector<LockWait> follow_locks(pid_t pid, const attach::RemoteMemory& memory,
                                   const std::vector<LockThread>& threads) {
  std::vector<LockWait> out;
  for (const LockThread& t : threads) {
    if (t.role == GilRole::kWaits) continue;  // asleep on the GIL itself
    const auto text = procfs::read(pid, fmt::format("task/{}/syscall", t.tid));
    if (!text) continue;
    const auto sc = pyruntime::parse_syscall(*text);
    if (!sc || sc->number != kFutex || sc->arg0 == 0) continue;
    LockWait w;
    w.tid = t.tid;
    w.address = sc->arg0;
    if (mentions(t.native_frames, {"pthread_mutex_lock", "__lll_lock_wait", "mutex_timedlock"})) {
      w.kind = "pthread mutex";
      auto owner = memory.read_value<int32_t>(attach::RemoteAddr(sc->arg0 + kMutexOwnerOffset));
      auto word = memory.read_value<int32_t>(attach::RemoteAddr(sc->arg0));
      // Believed only when locked and naming another thread of the process.
      if (owner && word && *word != 0 && *owner > 0 && *owner != t.tid && find(threads, *owner))
        w.owner = *owner;
    } else if (mentions(t.native_frames,
                        {"acquire_timed", "lock_PyThread_acquire", "PyThread_acquire_lock",
                         "sem_clockwait", "sem_wait", "sem_timedwait", "PyMutex", "PySemaphore"})) {
      w.kind = "Python lock";  // threading.Lock records no owner
    } else {
      w.kind = "futex";
    }
    out.push_back(w);
  }
  return out;
}

std::vector<Verdict> judge(const std::vector<LockThread>& threads,
                           const std::vector<LockWait>& locks) {
  std::vector<Verdict> out;
  for (const LockThread& h : threads) {
    if (h.role != GilRole::kHolds) continue;
    bool waited = false;
    for (const LockThread& t : threads) waited |= t.role == GilRole::kWaits && t.gil == h.gil;
    if (!waited) continue;
    Verdict v;
    v.holder = h.tid;
    v.gil = h.gil;
    const auto lock =
        std::find_if(locks.begin(), locks.end(), [&](const LockWait& w) { return w.tid == h.tid; });
    if (lock != locks.end()) {
      v.lock = lock->address;
      const LockThread* owner = lock->owner ? find(threads, *lock->owner) : nullptr;
      if (owner && owner->role == GilRole::kWaits && owner->gil == h.gil) {
        v.kind = "deadlock";
        v.other = owner->tid;
        v.text = fmt::format(
            "deadlock: {} holds the GIL and waits for {} 0x{:x}, which {} owns while it waits "
            "for the GIL; neither can go on",
            label(h), lock->kind, lock->address, label(*owner));
      } else {
        v.kind = "holder_blocked";
        v.other = owner ? owner->tid : 0;
        v.text = fmt::format(
            "{} holds the GIL while it waits for {} 0x{:x} ({}); the threads "
            "waiting for the GIL wait as long",
            label(h), lock->kind, lock->address,
            owner ? "owned by " + label(*owner) : std::string("owner unknown"));
      }
    } else {
      v.kind = "holder_not_releasing";
      v.text = fmt::format(
          "{} holds the GIL and does not let go of it{}; the others wait", label(h),
          h.native_frames.empty() ? std::string()
                                  : fmt::format(" (it is in {})", h.native_frames.front()));
    }
    out.push_back(std::move(v));
  }
  return out;
}

}  // namespace gilstat::cli

#include "cli/dump_locks.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "pyruntime/object_reader.hpp"

namespace gilstat::cli {
namespace {

using pyruntime::GilRole;

constexpr int64_t kFutex = 202;  // x86_64
// glibc's pthread_mutex_t: int __lock; unsigned __count; int __owner (the
// owner's tid while locked), on every 64-bit target glibc supports.
constexpr uint64_t kMutexOwnerOffset = 8;
// How much of a blocked thread's stack, from its stack pointer up, is
// searched for the RLock it waits for: the acquire's frames and the
// parking lot's wait entry sit well within it.
constexpr uint64_t kStackScanBytes = 8192;
constexpr uint64_t kPage = 4096;
constexpr uint64_t kLowestObject = 1 << 16;
constexpr uint64_t kHighestObject = uint64_t{1} << 47;  // x86_64 user space

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

// The 8-byte words of the stack from `sp` up, at most kStackScanBytes (fewer
// where the stack's mapping ends).
std::vector<uint64_t> stack_words(const attach::RemoteMemory& memory, uint64_t sp) {
  std::vector<uint64_t> words;
  uint64_t at = sp & ~uint64_t{7};
  const uint64_t end = at + kStackScanBytes;
  while (at < end) {
    const uint64_t chunk = std::min(end, (at & ~(kPage - 1)) + kPage) - at;
    std::vector<std::byte> bytes(chunk);
    if (!memory.read(attach::RemoteAddr(at), bytes)) break;
    for (size_t i = 0; i + 8 <= bytes.size(); i += 8) {
      uint64_t w;
      std::memcpy(&w, bytes.data() + i, 8);
      words.push_back(w);
    }
    at += chunk;
  }
  return words;
}

struct RLockState {
  uint64_t object = 0;
  uint64_t owner = 0;  // the owner's thread ident
  uint64_t count = 0;
};

// `object` read as a locked _thread.RLock: nullopt when it is not one, or
// is free (its owner word is stale then).
std::optional<RLockState> read_rlock(pyruntime::ObjectReader& objects,
                                     const cpython::RLockLayout& l, uint64_t object) {
  if (object < kLowestObject || object >= kHighestObject || object % 8) return std::nullopt;
  const attach::RemoteMemory& memory = objects.memory();
  const attach::RemoteAddr at(object);
  uint64_t count_bias = 0;
  if (l.inline_mutex) {  // PyMutex: bit 0 is "locked"
    auto bits = memory.read_value<uint8_t>(at + l.lock);
    if (!bits || !(*bits & 1)) return std::nullopt;
    count_bias = 1;  // `level` counts the re-entries only
  }
  auto owner = memory.read_value<uint64_t>(at + l.owner);
  auto count = memory.read_value<uint64_t>(at + l.count);
  if (!owner || !count || *owner == 0) return std::nullopt;
  if (!l.inline_mutex && *count == 0) return std::nullopt;
  if (!objects.is_type(at, "_thread.RLock")) return std::nullopt;
  return RLockState{object, *owner, *count + count_bias};
}

// The RLock thread `t`, asleep in futex `futex`, waits for: an RLock found
// through a word of its stack.  3.8-3.13: the object whose lock (a sem_t*)
// is the futex the thread sleeps on.  3.14+: the thread sleeps on a
// semaphore of its own; the parking lot's wait entry on its stack holds the
// address it parked on, the RLock's mutex.  An RLock the thread owns itself
// is not the one it waits for.
std::optional<RLockState> rlock_waited_for(pyruntime::ObjectReader& objects,
                                           const RLockProbe& probe, const LockThread& t,
                                           uint64_t futex) {
  if (!t.stack_pointer) return std::nullopt;
  const cpython::RLockLayout& l = *probe.rlock;
  const attach::RemoteMemory& memory = objects.memory();
  const attach::MapEntry* own_stack =
      probe.maps ? probe.maps->find(attach::RemoteAddr(t.stack_pointer)) : nullptr;
  auto plausible = [&](uint64_t object) {
    if (!probe.maps) return true;
    const attach::MapEntry* m = probe.maps->find(attach::RemoteAddr(object));
    return m && m->readable && m->writable && m != own_stack;
  };
  std::set<uint64_t> tried;
  for (uint64_t w : stack_words(memory, t.stack_pointer)) {
    uint64_t object = w;
    if (l.inline_mutex) {
      if (w < l.lock) continue;
      object = w - l.lock;
      if (!plausible(object)) continue;
    } else {
      if (!plausible(w)) continue;
      auto lock = memory.read_value<uint64_t>(attach::RemoteAddr(w) + l.lock);
      if (!lock || *lock != futex) continue;
    }
    if (!tried.insert(object).second) continue;
    auto r = read_rlock(objects, l, object);
    if (r && r->owner != t.pthread_id) return r;
  }
  return std::nullopt;
}

const LockThread* by_ident(const std::vector<LockThread>& threads, uint64_t ident) {
  for (const LockThread& t : threads)
    if (t.pthread_id && t.pthread_id == ident) return &t;
  return nullptr;
}

// The kind of lock from the native frames, and a glibc mutex's owner.
void classify(const attach::RemoteMemory& memory, const std::vector<LockThread>& threads,
              const LockThread& t, LockWait& w) {
  if (!t.frames_named) {
    w.kind = "unknown";
  } else if (mentions(t.native_frames,
                      {"pthread_mutex_lock", "__lll_lock_wait", "mutex_timedlock"})) {
    w.kind = "pthread mutex";
    auto owner = memory.read_value<int32_t>(attach::RemoteAddr(w.address + kMutexOwnerOffset));
    auto word = memory.read_value<int32_t>(attach::RemoteAddr(w.address));
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
}

}  // namespace

std::vector<LockWait> follow_locks(pid_t pid, const attach::RemoteMemory& memory,
                                   const std::vector<LockThread>& threads,
                                   const RLockProbe& rlocks) {
  std::optional<pyruntime::ObjectReader> objects;
  if (rlocks.objects && rlocks.rlock) objects.emplace(memory, *rlocks.objects, rlocks.minor);
  std::vector<LockWait> out;
  for (const LockThread& t : threads) {
    if (t.role == GilRole::kWaits) continue;  // asleep on the GIL itself
    const auto sc = t.syscall ? t.syscall : pyruntime::read_syscall(pid, t.tid);
    if (!sc || sc->number != kFutex || sc->arg0 == 0) continue;
    LockWait w;
    w.tid = t.tid;
    w.address = sc->arg0;
    classify(memory, threads, t, w);
    // An RLock is told by its object, with or without symbols (named frames
    // of a mutex or a bare futex rule it out).
    const bool maybe_rlock = w.kind == "Python lock" || w.kind == "unknown";
    if (objects && t.pthread_id && maybe_rlock) {
      if (auto r = rlock_waited_for(*objects, rlocks, t, sc->arg0)) {
        w.kind = "RLock";
        w.address = r->object;
        w.owner_count = r->count;
        w.owner.reset();
        if (const LockThread* o = by_ident(threads, r->owner); o && o->tid != t.tid)
          w.owner = o->tid;
      }
    }
    out.push_back(w);
  }
  return out;
}

namespace {

const LockWait* lock_of(const std::vector<LockWait>& locks, pid_t tid) {
  for (const LockWait& w : locks)
    if (w.tid == tid) return &w;
  return nullptr;
}

std::string what(const LockWait& w) {
  return fmt::format("{} 0x{:x}", w.kind == "unknown" ? "a lock of unknown kind" : w.kind,
                     w.address);
}

// The threads after `from` that wait for each other's locks: from's lock's
// owner, that owner's lock's owner, ... while each waits for a lock whose
// owner is known.  Ends at a thread that waits for no such lock (or the
// first one seen twice, listed last).
std::vector<const LockThread*> lock_chain(const std::vector<LockThread>& threads,
                                          const std::vector<LockWait>& locks,
                                          const LockThread& from) {
  std::vector<const LockThread*> chain;
  const LockThread* at = &from;
  while (chain.size() <= threads.size()) {
    const LockWait* w = lock_of(locks, at->tid);
    const LockThread* next = w && w->owner ? find(threads, *w->owner) : nullptr;
    if (!next) break;
    chain.push_back(next);
    if (next == &from || std::count(chain.begin(), chain.end(), next) > 1) break;
    at = next;
  }
  return chain;
}

// "A, which B owns while it waits for K 0x…, which C owns while it waits
// for" …: the middle of a deadlock's sentence, from `first` along `chain`.
std::string chain_text(const std::vector<LockWait>& locks, const LockThread& first,
                       const std::vector<const LockThread*>& chain, size_t steps) {
  std::string s = what(*lock_of(locks, first.tid));
  for (size_t i = 0; i + 1 < steps; ++i)
    s += fmt::format(", which {} owns while it waits for {}", label(*chain[i]),
                     what(*lock_of(locks, chain[i]->tid)));
  return s;
}

std::string everyone(size_t n) { return n == 2 ? "neither can go on" : "none of them can go on"; }

Verdict gil_verdict(const std::vector<LockThread>& threads, const std::vector<LockWait>& locks,
                    const LockThread& h) {
  Verdict v;
  v.holder = h.tid;
  v.gil = h.gil;
  const LockWait* lock = lock_of(locks, h.tid);
  if (!lock) {
    v.kind = "holder_not_releasing";
    v.text = fmt::format("{} holds the GIL and does not let go of it{}; the others wait", label(h),
                         h.native_frames.empty()
                             ? std::string()
                             : fmt::format(" (it is in {})", h.native_frames.front()));
    return v;
  }
  v.lock = lock->address;
  const std::vector<const LockThread*> chain = lock_chain(threads, locks, h);
  // The first thread along the chain that waits for this GIL closes the cycle.
  size_t closes = 0;
  while (closes < chain.size() && chain[closes] != &h &&
         !(chain[closes]->role == GilRole::kWaits && chain[closes]->gil == h.gil))
    ++closes;
  const LockThread* owner = chain.empty() ? nullptr : chain.front();
  v.other = owner ? owner->tid : 0;
  if (closes < chain.size() && chain[closes] != &h) {
    v.kind = "deadlock";
    v.cycle.push_back(h.tid);
    for (size_t i = 0; i <= closes; ++i) v.cycle.push_back(chain[i]->tid);
    v.text = fmt::format(
        "deadlock: {} holds the GIL and waits for {}, which {} owns while it waits for the "
        "GIL; {}",
        label(h), chain_text(locks, h, chain, closes + 1), label(*chain[closes]),
        everyone(v.cycle.size()));
  } else {
    v.kind = "holder_blocked";
    v.text = fmt::format(
        "{} holds the GIL while it waits for {} ({}); the threads waiting for the GIL wait as "
        "long",
        label(h), what(*lock), owner ? "owned by " + label(*owner) : std::string("owner unknown"));
  }
  return v;
}

}  // namespace

std::vector<Verdict> judge(const std::vector<LockThread>& threads,
                           const std::vector<LockWait>& locks) {
  std::vector<Verdict> out;
  for (const LockThread& h : threads) {
    if (h.role != GilRole::kHolds) continue;
    bool waited = false;
    for (const LockThread& t : threads) waited |= t.role == GilRole::kWaits && t.gil == h.gil;
    if (waited) out.push_back(gil_verdict(threads, locks, h));
  }
  // Cycles of locks alone: each reported once, from its first thread here.
  std::set<pid_t> in_cycle;
  for (const LockThread& t : threads) {
    if (in_cycle.count(t.tid)) continue;
    const std::vector<const LockThread*> chain = lock_chain(threads, locks, t);
    if (chain.empty() || chain.back() != &t) continue;
    Verdict v;
    v.kind = "deadlock";
    v.other = chain.front()->tid;
    v.lock = lock_of(locks, t.tid)->address;
    v.cycle.push_back(t.tid);
    for (size_t i = 0; i + 1 < chain.size(); ++i) v.cycle.push_back(chain[i]->tid);
    for (pid_t tid : v.cycle) in_cycle.insert(tid);
    v.text =
        fmt::format("deadlock: {} waits for {}, which {} owns; {}", label(t),
                    chain_text(locks, t, chain, chain.size()), label(t), everyone(v.cycle.size()));
    out.push_back(std::move(v));
  }
  return out;
}

}  // namespace gilstat::cli

// The hook path.  Runs inside the target on every pthread call the
// interpreter makes through its GOT, so it obeys the probe's rules: no
// allocation, no locks, no stdio, no Python API, no dlsym; syscalls only once
// per thread (gettid when a thread claims its ring).  A call that is not about
// a known GIL costs one or two pointer compares.  Finding GILs is in
// gil_discovery.cpp, naming threads at their start in thread_names.cpp.
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

#include <cstring>
#include <type_traits>

#include "gilstat/ring.hpp"
#include "got_patch.hpp"
#include "probe_state.hpp"

namespace gilstat::probe {

ProbeGlobals g;

namespace {

// Per-thread state: a ring pointer and two bit masks (one bit per GIL index).
struct ThreadState {
  proto::RingControl* ring;
  uint16_t held;     // this thread holds GIL i
  uint16_t waiting;  // this thread entered take_gil for GIL i and has not acquired
  uint8_t in_hook;   // nesting guard
  uint8_t own;       // the probe's own thread
  uint32_t session;  // g.session the masks belong to
  // A WaitBegin counted in the totals but not yet written to the ring: 1 +
  // its GIL index (0: none), and its time.  Written as a ShortWaitAcquire
  // with the Acquire when that comes soon enough, else on its own before any
  // other event of the thread and before the thread blocks in take_gil.
  uint8_t pending_wait;
  // The pending WaitBegin's time is the acquisition's, not yet read
  // (begin_wait_at_acquire).
  uint8_t pending_untimed;
  uint64_t pending_ts;
};
static_assert(proto::kMaxGils <= 16);
__thread ThreadState t_state __attribute__((tls_model("initial-exec")));

// The hooks must have exactly the signatures (incl. noexcept) of what they
// replace; each is checked next to its definition.
using MutexFn = int (*)(pthread_mutex_t*) noexcept;
using SignalFn = int (*)(pthread_cond_t*) noexcept;
using WaitFn = int (*)(pthread_cond_t*, pthread_mutex_t*);
using TimedWaitFn = int (*)(pthread_cond_t*, pthread_mutex_t*, const struct timespec*);
using CreateFn = int (*)(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*) noexcept;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"  // glibc's nonnull attributes
static_assert(std::is_same_v<MutexFn, decltype(&pthread_mutex_lock)>);
static_assert(std::is_same_v<MutexFn, decltype(&pthread_mutex_unlock)>);
static_assert(std::is_same_v<MutexFn, decltype(&pthread_mutex_trylock)>);
static_assert(std::is_same_v<SignalFn, decltype(&pthread_cond_signal)>);
static_assert(std::is_same_v<WaitFn, decltype(&pthread_cond_wait)>);
static_assert(std::is_same_v<TimedWaitFn, decltype(&pthread_cond_timedwait)>);
static_assert(std::is_same_v<CreateFn, decltype(&pthread_create)>);
#pragma GCC diagnostic pop

// The real functions, never the saved GOT values: those may be the
// lazy-binding stub, and calling it would re-resolve the slot and silently
// remove the hook (the lazy-binding trap, docs/gil-internals.md).
using MutexInitFn = int (*)(pthread_mutex_t*, const pthread_mutexattr_t*) noexcept;
MutexInitFn real_mutex_init;
MutexFn real_mutex_lock;
MutexFn real_mutex_trylock;
MutexFn real_mutex_unlock;
SignalFn real_cond_signal;
WaitFn real_cond_wait;
TimedWaitFn real_cond_timedwait;
CreateFn real_pthread_create;

// Zeroes a ring's totals for consumer session `session`.  Only the ring's
// own thread calls it (it is their only writer), or the thread claiming it.
void clear_totals(proto::RingControl* r, uint32_t session) {
  for (proto::ThreadTotals& t : r->totals) {
    const uint32_t s = t.seq.load(std::memory_order_relaxed);
    t.seq.store(s + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    t.state.store(0, std::memory_order_relaxed);
    for (auto* f : {&t.first_ts, &t.since, &t.wait, &t.held, &t.released, &t.acquisitions,
                    &t.forced_handoffs})
      f->store(0, std::memory_order_relaxed);
    t.seq.store(s + 2, std::memory_order_release);
  }
  r->totals_session.store(session, std::memory_order_release);
}

inline bool recording() {
  if (!g.recording.load(std::memory_order_acquire)) return false;
  const uint32_t session = g.session.load(std::memory_order_relaxed);
  if (__builtin_expect(t_state.session != session, 0)) {
    t_state.held = 0;
    t_state.waiting = 0;
    t_state.pending_wait = 0;
    t_state.pending_untimed = 0;
    t_state.session = session;
    if (t_state.ring) clear_totals(t_state.ring, session);
  }
  return true;
}

// Index of the GIL whose field at `offset_in_addrs` equals p, or -1.
template <uintptr_t GilAddrs::*Field>
inline int gil_index(const void* p) {
  const auto addr = reinterpret_cast<uintptr_t>(p);
  const uint32_t n = g.gil_count.load(std::memory_order_acquire);
  for (uint32_t i = 0; i < n; ++i)
    if (g.gils[i].*Field == addr) return static_cast<int>(i);
  return -1;
}

proto::RingControl* ring_at(uint32_t i) {
  return reinterpret_cast<proto::RingControl*>(g.rings + g.ring_stride * i);
}

// First event of a thread: claim a free ring.  This is the only place on the
// hook path that makes syscalls (gettid), once per thread.
proto::RingControl* claim_ring() {
  for (uint32_t i = 0; i < g.ring_count; ++i) {
    proto::RingControl* r = ring_at(i);
    uint32_t expected = static_cast<uint32_t>(proto::RingState::Free);
    if (!r->state.compare_exchange_strong(
            expected, static_cast<uint32_t>(proto::RingState::Claiming), std::memory_order_acq_rel))
      continue;
    r->tid = static_cast<uint32_t>(syscall(SYS_gettid));
    r->flags = t_state.own ? uint32_t{proto::kRingOwnThread} : 0u;
    r->generation += 1;
    r->pthread_id = static_cast<uint64_t>(pthread_self());
    clear_totals(r, t_state.session);
    // The consumer scans rings below this mark only.  Rings are taken lowest
    // first, so it rarely moves: one relaxed load, a CAS only when it does.
    std::atomic<uint32_t>& claimed = g.header->rings_claimed;
    uint32_t mark = claimed.load(std::memory_order_relaxed);
    while (mark < i + 1 && !claimed.compare_exchange_weak(mark, i + 1, std::memory_order_relaxed)) {
    }
    r->state.store(static_cast<uint32_t>(proto::RingState::Active), std::memory_order_release);
    // The probe thread closes it once this thread has exited
    // (close_exited_rings).
    return r;
  }
  return nullptr;
}

// The thread's ring, claimed at its first event; null when none is free
// (the event is then counted as lost).
inline proto::RingControl* thread_ring() {
  proto::RingControl* r = t_state.ring;
  if (!r) {
    r = claim_ring();
    if (!r) {
      g.header->drops_no_ring.fetch_add(1, std::memory_order_relaxed);
      return nullptr;
    }
    t_state.ring = r;
  }
  return r;
}

inline void push(proto::RingControl* r, proto::EventKind kind, int gil, uint64_t value,
                 uint32_t seq, uint64_t ts) {
  if (!proto::ring_push_fields(r, g.ring_capacity, ts, value, seq, static_cast<uint8_t>(kind),
                               static_cast<uint8_t>(gil)) &&
      kind == proto::EventKind::ShortWaitAcquire) {
    // It stood for two events: both are lost.
    r->dropped.store(r->dropped.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
}

// Writes the deferred WaitBegin, if any, so that the ring keeps the
// thread's events in their order.
inline void flush_pending_wait() {
  if (!t_state.pending_wait) return;
  const int gil = t_state.pending_wait - 1;
  t_state.pending_wait = 0;
  proto::RingControl* r = t_state.ring;
  if (t_state.pending_untimed) {
    // The take ended some other way than by acquiring (a thread told to
    // exit, a free-threaded GIL disabled meanwhile): its wait began no
    // later than now.
    t_state.pending_untimed = 0;
    t_state.pending_ts = now_raw();
    if (r) proto::totals_add(r->totals[gil], proto::EventKind::WaitBegin, t_state.pending_ts);
  }
  if (r) push(r, proto::EventKind::WaitBegin, gil, 0, 0, t_state.pending_ts);
}

// One event into the thread's ring r, after any deferred WaitBegin.
inline void emit_to(proto::RingControl* r, proto::EventKind kind, int gil, uint64_t value,
                    uint32_t seq, uint64_t ts) {
  flush_pending_wait();
  proto::totals_add(r->totals[gil], kind, ts);
  push(r, kind, gil, value, seq, ts);
}

inline void emit(proto::EventKind kind, int gil, uint64_t value, uint32_t seq, uint64_t ts) {
  if (proto::RingControl* r = thread_ring()) emit_to(r, kind, gil, value, seq, ts);
}

// WaitBegin: counted now, written later (pending_wait).
inline void begin_wait(int gil, uint64_t ts) {
  proto::RingControl* r = thread_ring();
  if (!r) return;
  flush_pending_wait();
  proto::totals_add(r->totals[gil], proto::EventKind::WaitBegin, ts);
  t_state.pending_wait = static_cast<uint8_t>(gil + 1);
  t_state.pending_ts = ts;
}

// WaitBegin of a take that cannot wait: this thread got gil->mutex at once
// and found the GIL unlocked, so take_gil goes straight on to lock it and no
// other thread can take it first (every take and drop holds that mutex).
// Its wait is counted as none: the WaitBegin gets the acquisition's time,
// which saves one clock read (a third of the clock's cost) on every
// uncontended re-take, the commonest GIL cycle there is.
inline void begin_wait_at_acquire(int gil) {
  if (!thread_ring()) return;
  flush_pending_wait();
  t_state.pending_wait = static_cast<uint8_t>(gil + 1);
  t_state.pending_untimed = 1;
}

// Acquire: with its WaitBegin in one event when the wait was short.
inline void acquired(int gil, uint64_t holder, uint32_t seq, uint64_t ts) {
  proto::RingControl* r = thread_ring();
  if (!r) return;
  if (t_state.pending_untimed && t_state.pending_wait == gil + 1) {
    t_state.pending_untimed = 0;
    t_state.pending_ts = ts;
    proto::totals_add(r->totals[gil], proto::EventKind::WaitBegin, ts);
  }
  if (t_state.pending_wait == gil + 1 && ts >= t_state.pending_ts &&
      ts - t_state.pending_ts <= proto::kShortWaitMax && holder <= proto::kShortWaitHolderMask) {
    t_state.pending_wait = 0;
    proto::totals_add(r->totals[gil], proto::EventKind::Acquire, ts);
    push(r, proto::EventKind::ShortWaitAcquire, gil, holder | ((ts - t_state.pending_ts) << 48),
         seq, ts);
    return;
  }
  emit_to(r, proto::EventKind::Acquire, gil, holder, seq, ts);
}

// Adds one to a counter of the GIL's slot; the caller holds gil->mutex, so
// there is one writer at a time.
inline void bump(std::atomic<uint64_t>& counter) {
  counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

// Serial number for events issued under gil->mutex.  The caller holds that
// mutex, so a relaxed load + store cannot race with another writer.
inline uint32_t next_seq(int gil) {
  auto& slot = g.header->gils[gil].seq;
  const uint32_t s = slot.load(std::memory_order_relaxed) + 1;
  slot.store(s, std::memory_order_relaxed);
  return s;
}

struct HookGuard {
  bool entered;
  HookGuard() : entered(!t_state.in_hook) { t_state.in_hook = 1; }
  ~HookGuard() {
    if (entered) t_state.in_hook = 0;
  }
};

// The thread that held GIL i when it was armed enters drop_gil: from now on
// it is known to hold it.
inline bool claim_holder_at_arm(int i) {
  const uint64_t holder = g.holder_at_arm[i].load(std::memory_order_relaxed);
  if (!holder || holder != static_cast<uint64_t>(pthread_self())) return false;
  g.holder_at_arm[i].store(0, std::memory_order_relaxed);
  t_state.held |= (1u << i);
  return true;
}

int hook_mutex_lock(pthread_mutex_t* m) noexcept {
  if (g.want_arm.load(std::memory_order_relaxed)) try_arm();
  if (recording()) {
    HookGuard guard;
    const int i = guard.entered ? gil_index<&GilAddrs::mutex>(m) : -1;
    // A free-threaded GIL that was just enabled (or disabled) is locked
    // here first: take_gil returns before this lock while it is disabled.
    if (i >= 0 && g.locator.free_threaded) note_gil_enabled(i);
    if (i >= 0 && !(t_state.held & (1u << i)) && !claim_holder_at_arm(i)) {
      t_state.waiting |= (1u << i);
      if (real_mutex_trylock(m) == 0) {
        // The mutex is ours; `locked` cannot change while we hold it.
        if (read_i32(g.gils[i].base + g.fields.locked) == 0)
          begin_wait_at_acquire(i);
        else
          begin_wait(i, now_raw());
        return 0;
      }
      begin_wait(i, now_raw());
    }
  }
  return real_mutex_lock(m);
}

int hook_mutex_unlock(pthread_mutex_t* m) noexcept {
  if (recording() && t_state.waiting) {
    HookGuard guard;
    const int i = guard.entered ? gil_index<&GilAddrs::mutex>(m) : -1;
    if (i >= 0 && (t_state.waiting & (1u << i))) {
      t_state.waiting &= ~(1u << i);
      emit(proto::EventKind::WaitAbort, i, 0, 0, now_raw());
    }
  }
  return real_mutex_unlock(m);
}

int hook_cond_signal(pthread_cond_t* c) noexcept {
  if (recording()) {
    HookGuard guard;
    if (guard.entered) {
      // The clock only for a GIL's condition: the interpreter signals others too.
      int i = gil_index<&GilAddrs::switch_cond>(c);
      if (i >= 0) {
        const uint64_t ts = now_raw();
        // take_gil: locked = 1 and last_holder updated just before this call,
        // under switch_mutex (and gil->mutex).
        const uintptr_t base = g.gils[i].base;
        proto::GilSlot& slot = g.header->gils[i];
        const uint64_t switch_number = read_u64(base + g.fields.switch_number);
        slot.last_switch_number.store(switch_number, std::memory_order_relaxed);
        const uint64_t holder = read_u64(base + g.fields.last_holder);
        if (slot.acquisitions.load(std::memory_order_relaxed) == 0) {
          // The first acquisition seen opens the switch count: switch_number
          // and the holder as of now.  Read at arming instead, they could
          // miss a switch made between that read and the hooks recording.
          slot.initial_switch_number = switch_number;
          slot.initial_holder = holder;
          slot.prev_holder.store(holder, std::memory_order_relaxed);
        }
        bump(slot.acquisitions);
        if (holder != slot.prev_holder.load(std::memory_order_relaxed)) {
          bump(slot.switches);
          slot.prev_holder.store(holder, std::memory_order_relaxed);
        }
        t_state.held |= (1u << i);
        t_state.waiting &= ~(1u << i);
        acquired(i, holder, next_seq(i), ts);
      } else if ((i = gil_index<&GilAddrs::cond>(c)) >= 0 && (t_state.held & (1u << i))) {
        // drop_gil: locked = 0 just before this call, under gil->mutex.  A
        // signal from a non-holder (free-threaded "GIL got disabled" path)
        // is not a release.
        const uint64_t ts = now_raw();
        t_state.held &= ~(1u << i);
        emit(proto::EventKind::Release, i, read_u64(g.gils[i].base + g.fields.last_holder),
             next_seq(i), ts);
      }
    }
  }
  return real_cond_signal(c);
}

int hook_cond_timedwait(pthread_cond_t* c, pthread_mutex_t* m, const struct timespec* abstime) {
  int i = -1;
  uint64_t switch_before = 0;
  if (recording() && !t_state.in_hook && (i = gil_index<&GilAddrs::cond>(c)) >= 0) {
    switch_before = read_u64(g.gils[i].base + g.fields.switch_number);
    // About to block for the GIL: the wait must be visible while it lasts.
    flush_pending_wait();
  }
  const int rc = real_cond_timedwait(c, m, abstime);
  if (t_state.own) own_thread_wait_tick();
  if (i >= 0 && rc == ETIMEDOUT && recording()) {
    // Back under gil->mutex.  take_gil sets the drop request exactly when the
    // GIL is still locked and nobody switched meanwhile (take_gil, docs/gil-internals.md).
    const uintptr_t base = g.gils[i].base;
    if (read_i32(base + g.fields.locked) == 1 &&
        read_u64(base + g.fields.switch_number) == switch_before) {
      HookGuard guard;
      bump(g.header->gils[i].drop_requests);
      emit(proto::EventKind::DropRequest, i, read_u64(base + g.fields.last_holder), next_seq(i),
           now_raw());
    }
  }
  return rc;
}

int hook_cond_wait(pthread_cond_t* c, pthread_mutex_t* m) {
  if (recording() && !t_state.in_hook) {
    const int i = gil_index<&GilAddrs::switch_cond>(c);
    if (i >= 0) {
      HookGuard guard;
      emit(proto::EventKind::ForcedHandoff, i, 0, 0, now_raw());
    } else if (gil_index<&GilAddrs::cond>(c) >= 0) {
      // take_gil waits with a timeout in every version; were it ever to wait
      // without one, the wait must be visible while it lasts all the same.
      flush_pending_wait();
    }
  }
  return real_cond_wait(c, m);
}

static_assert(std::is_same_v<MutexFn, decltype(&hook_mutex_lock)>);
static_assert(std::is_same_v<MutexFn, decltype(&hook_mutex_unlock)>);
static_assert(std::is_same_v<SignalFn, decltype(&hook_cond_signal)>);
static_assert(std::is_same_v<WaitFn, decltype(&hook_cond_wait)>);
static_assert(std::is_same_v<TimedWaitFn, decltype(&hook_cond_timedwait)>);

template <typename Fn>
bool resolve(Fn* out, const char* name, const char* version) {
  // RTLD_DEFAULT finds libc's (or, before glibc 2.34, libpthread's) export:
  // the probe exports no pthread names of its own.
  void* p = dlvsym(RTLD_DEFAULT, name, version);
  if (!p) p = dlsym(RTLD_DEFAULT, name);
  *out = reinterpret_cast<Fn>(p);
  return p != nullptr;
}

int hook_mutex_init(pthread_mutex_t* m, const pthread_mutexattr_t* attr) noexcept {
  const int rc = real_mutex_init(m, attr);
  note_mutex_init(reinterpret_cast<uintptr_t>(m));
  return rc;
}

static_assert(std::is_same_v<MutexInitFn, decltype(&hook_mutex_init)>);

// Not a GIL call: thread start, where a new Python thread gets its name
// (thread_names.cpp) before it can run any Python code.
int hook_pthread_create(pthread_t* thread, const pthread_attr_t* attr, void* (*routine)(void*),
                        void* arg) noexcept {
  const uintptr_t method = python_thread_method(routine, arg);
  const int rc = real_pthread_create(thread, attr, routine, arg);
  if (method) name_started_thread(rc, rc == 0 ? *thread : pthread_t{}, method);
  return rc;
}

static_assert(std::is_same_v<CreateFn, decltype(&hook_pthread_create)>);

// Not a GIL call: CPython looks up PyInit_<name> with dlsym right after it
// dlopens an extension, before any of its code runs, so the new module's
// C API calls are hooked from its first one (module_hooks.cpp).  dlopen
// itself is not hooked: glibc resolves $ORIGIN and RUNPATH from its
// caller's address, which a hook would change.
using DlsymFn = void* (*)(void*, const char*) noexcept;
DlsymFn real_dlsym;
void* hook_dlsym(void* handle, const char* name) noexcept {
  if (g.recording.load(std::memory_order_acquire)) note_objects_loaded();
  return real_dlsym(handle, name);
}
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"
static_assert(std::is_same_v<DlsymFn, decltype(&dlsym)>);
#pragma GCC diagnostic pop
static_assert(std::is_same_v<DlsymFn, decltype(&hook_dlsym)>);

const HookSpec kHooks[] = {
    {"pthread_mutex_init", reinterpret_cast<void*>(&hook_mutex_init)},
    {"pthread_mutex_lock", reinterpret_cast<void*>(&hook_mutex_lock)},
    {"pthread_mutex_unlock", reinterpret_cast<void*>(&hook_mutex_unlock)},
    {"pthread_cond_signal", reinterpret_cast<void*>(&hook_cond_signal)},
    {"pthread_cond_wait", reinterpret_cast<void*>(&hook_cond_wait)},
    {"pthread_cond_timedwait", reinterpret_cast<void*>(&hook_cond_timedwait)},
    {"pthread_create", reinterpret_cast<void*>(&hook_pthread_create)},
    {"dlsym", reinterpret_cast<void*>(&hook_dlsym)},
};

}  // namespace

void hooks_table(const HookSpec** specs, size_t* n) {
  *specs = kHooks;
  *n = sizeof(kHooks) / sizeof(kHooks[0]);
}

bool resolve_real_functions() {
  bool ok = resolve(&real_mutex_init, "pthread_mutex_init", "GLIBC_2.2.5");
  ok &= resolve(&real_mutex_lock, "pthread_mutex_lock", "GLIBC_2.2.5");
  ok &= resolve(&real_mutex_trylock, "pthread_mutex_trylock", "GLIBC_2.2.5");
  ok &= resolve(&real_mutex_unlock, "pthread_mutex_unlock", "GLIBC_2.2.5");
  // GLIBC_2.3.2 is the current condvar ABI; the 2.2.5 versions are the old
  // compatibility ones and must not be mixed with it.
  ok &= resolve(&real_cond_signal, "pthread_cond_signal", "GLIBC_2.3.2");
  ok &= resolve(&real_cond_wait, "pthread_cond_wait", "GLIBC_2.3.2");
  ok &= resolve(&real_cond_timedwait, "pthread_cond_timedwait", "GLIBC_2.3.2");
  ok &= resolve(&real_pthread_create, "pthread_create", "GLIBC_2.34");
  ok &= resolve(&real_dlsym, "dlsym", "GLIBC_2.34");
  return ok;
}

void mark_current_thread_own() { t_state.own = 1; }

uint64_t now_raw_clock() { return now_raw(); }

void emit_event(proto::EventKind kind, int gil, uint64_t value, uint32_t seq, uint64_t ts) {
  emit(kind, gil, value, seq, ts);
}

}  // namespace gilstat::probe

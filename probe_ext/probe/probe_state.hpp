// State shared by the probe's translation units.  Everything the hook path
// touches is here: plain globals written once before the hooks can see them
// (or published with release stores), never locks.
#pragma once

#include <pthread.h>
#include <time.h>
#include <x86intrin.h>

#include <atomic>
#include <cstdint>

#include "gilstat/cpython_layout.hpp"
#include "gilstat/protocol.hpp"

namespace gilstat::probe {

// Addresses of one GIL's synchronisation objects inside this process.
struct GilAddrs {
  uintptr_t base;
  uintptr_t mutex;
  uintptr_t cond;
  uintptr_t switch_cond;
};

// How to find the GIL once the interpreter has created it (lazy arming).
struct GilLocator {
  int minor = 0;
  bool free_threaded = false;
  uintptr_t runtime = 0;           // &_PyRuntime
  uint64_t runtime_size = 0;       // its symbol's size
  uintptr_t fixed_gil = 0;         // 3.8–3.11: &_PyRuntime.ceval.gil
  uintptr_t interpreters_main = 0; // 3.12+: &_PyRuntime.interpreters.main
  uint32_t ceval_gil = 0;          // 3.12+: offset of interp->ceval.gil
  uint32_t own_gil_storage = 0;    // 3.12+: offset of interp->_gil
  uint32_t tstate_thread_id = 0;   // offset of PyThreadState.thread_id
  // 3.12+: walking the interpreters (subinterpreters may own a GIL).
  uintptr_t interpreters_head = 0; // &_PyRuntime.interpreters.head
  uint32_t interp_next = 0;
  uint32_t interp_id = 0;
};

struct ProbeGlobals {
  proto::Header* header = nullptr;  // the shared region, or nullptr when inert
  uint32_t ring_count = 0;
  uint32_t ring_capacity = 0;
  uint64_t ring_stride = 0;
  char* rings = nullptr;
  bool clock_tsc = false;
  cpython::GilFields fields = cpython::kGilDefault;
  GilLocator locator;

  GilAddrs gils[proto::kMaxGils] = {};
  std::atomic<uint32_t> gil_count{0};       // slots the hooks scan
  std::atomic<uint32_t> gils_allocated{0};  // slots handed out (may run ahead)
  // 1 while hooks should record; 0 passes every call straight through.
  std::atomic<int> recording{0};
  // 1 while arming is still possible on the hook path (hooks installed, GIL
  // not found yet).
  std::atomic<int> want_arm{0};
  // 1 when a stop could not restore the GOT at once (another thread held
  // the patcher): the probe thread retries until it has.
  std::atomic<int> restore_pending{0};
  // Bumped when a new consumer session starts on the same region; threads
  // then forget held/waiting bits from before (they were not tracked while
  // nobody recorded).
  std::atomic<uint32_t> session{0};
  // Per GIL: the thread (pthread_t) that held it when it was armed, until
  // that thread's first hook call claims it.  Lets an attach see the current
  // holder's release as a release, not as a spurious wait.
  std::atomic<uint64_t> holder_at_arm[proto::kMaxGils] = {};
  // Free-threaded builds, per GIL: the `enabled` value of the last
  // GilEnabled event (kEnabledUnseen before the first).
  std::atomic<int32_t> enabled_emitted[proto::kMaxGils] = {};
};

inline constexpr int32_t kEnabledUnseen = INT32_MIN;

extern ProbeGlobals g;

// The region's clock, raw units: TSC ticks or vDSO CLOCK_MONOTONIC ns (no
// syscall either way).
inline uint64_t now_raw() {
  if (g.clock_tsc) return __rdtsc();
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + ts.tv_nsec;
}

inline uint64_t read_u64(uintptr_t addr) {
  return __atomic_load_n(reinterpret_cast<const uint64_t*>(addr), __ATOMIC_RELAXED);
}
inline int32_t read_i32(uintptr_t addr) {
  return __atomic_load_n(reinterpret_cast<const int32_t*>(addr), __ATOMIC_RELAXED);
}

// hooks.cpp
void hooks_table(const struct HookSpec** specs, size_t* n);
// An event in the calling thread's ring (claims one on its first event).
void emit_event(proto::EventKind kind, int gil, uint64_t value, uint32_t seq, uint64_t ts);
bool resolve_real_functions();
void mark_current_thread_own();
// Called by the probe's own thread from inside a GIL wait (the hooked
// pthread_cond_timedwait returns every switch interval): behind busy
// threads that wait can last seconds, and the watchdog must not wait with it.
void own_thread_wait_tick();

// gil_discovery.cpp
// Arms the GIL filter if the interpreter has created its GIL.  Safe on the
// hook path: plain loads of the interpreter's memory, no calls.
bool try_arm();
// 3.12+: registers the GIL of every interpreter that exists now (attach).
// Not on the hook path: reads other interpreters with safe_read.
void register_existing_gils();
// Our pthread_mutex_init hook, after the real call: 3.12+ create_gil()
// of a subinterpreter that owns its GIL.
void note_mutex_init(uintptr_t addr);
// The clock of the region (TSC or CLOCK_MONOTONIC), raw units.
uint64_t now_raw_clock();

// Free-threaded builds: emits a GilEnabled event when GIL i's `enabled`
// field differs from the last one emitted.  Only call it while that GIL's
// memory is known to be alive (its mutex is being locked, or it is the main
// GIL).  Safe on the hook path.
void note_gil_enabled(int i);

// thread_names.cpp
// Reads our own memory without faulting (process_vm_readv on ourselves): for
// addresses derived from data we do not control.  A syscall: not for the
// GIL hook path.
bool safe_read(uintptr_t addr, void* out, size_t n);
// Appends (tid, name) to the region's name log unless it is what the log
// already says for tid.  Lock-free; any thread may call it.
void publish_name(uint32_t tid, const char* name, size_t len, proto::NameSource source);
// Hash of the name last published for tid, or 0 (a lossy cache).
uint32_t cached_name_hash(uint32_t tid);
// A new consumer session: every live thread's name must be published again.
void forget_published_names();
// At discovery: the interpreter object's text, the C API for thread start.
void init_thread_naming(const struct link_map* interp);
// On the probe thread: checks where struct pthread keeps the tid.
void confirm_tid_offset();
// On the probe thread: marks Closed the rings whose thread has exited (the
// CLI drains and frees them), without anything on the hook path: no
// pthread key (its first setspecific may allocate) and no TLS destructor.
// Returns the number closed; *in_use: the program's rings that were live.
int close_exited_rings(uint32_t* in_use);
// Rings [0, n) are the ones ever claimed (Header::rings_claimed); the probe
// thread's scans stop there too.
inline uint32_t claimed_ring_count() {
  const uint32_t n = g.header->rings_claimed.load(std::memory_order_acquire);
  return n < g.ring_count ? n : g.ring_count;
}
// Our pthread_create hook: before the real call, the Thread._bootstrap
// method a new Python thread will run, with a reference of ours (0: not a
// Python thread, or naming is off); after the call, names the thread from
// it when the create succeeded, and drops the reference.
uintptr_t python_thread_method(void* (*routine)(void*), void* arg);
void name_started_thread(int create_rc, pthread_t thread, uintptr_t method);

// module_hooks.cpp: per-module accounting of the C API's thread-state calls.
// Resolves the real PyEval_SaveThread & co. in the interpreter object
// `interp`; false when one is missing (the module table then stays empty).
bool resolve_module_functions(const struct link_map* interp);
// Hooks every loaded object not hooked yet and marks those unloaded since
// (dl_iterate_phdr, outside any hook).  Waits for a concurrent scan.
void scan_modules();
// From the dlsym hook: scans when objects were loaded or unloaded since the
// last scan.
void note_objects_loaded();
// Gives every hooked object still loaded its GOT slots back (skipping those
// unloaded since: never a write to unmapped memory).  False when another
// thread is scanning: the probe thread retries.
bool restore_modules();
// A new consumer session: the table starts empty.
void clear_module_table();

// probe_thread.cpp
void start_probe_thread();
// Records whether the main GIL is enabled (free-threaded builds); plain
// loads and stores, safe on the hook path.
void sample_gil_enabled();
// True while an attached CLI's heartbeat keeps moving.
bool probe_consumer_alive();

}  // namespace gilstat::probe

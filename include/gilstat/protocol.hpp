// The shared-memory protocol between the probe (inside the target) and the CLI.
//
// Append-only: add fields at the end of structs, never reorder; bump
// kProtocolVersion when the meaning of an existing field changes.  Fixed-width
// types only, no pointers (an address in the target is a uint64_t).
//
// Region layout (one memfd, mapped by both sides, mode 0600):
//
//   +-----------------------------+ 0
//   | Header                      |   magic, version, sizes, status, GIL table
//   +-----------------------------+ header.names_offset
//   | NameSlot[name_slots]        |   name log: (tid, name) entries, appended
//   |                             |   when a thread starts or is renamed
//   +-----------------------------+ header.rings_offset
//   | Ring 0: RingControl         |   per-thread SPSC ring, claimed by CAS
//   |         Event[capacity]     |
//   | Ring 1 ...                  |
//   +-----------------------------+ header.total_size
//
// The CLI treats everything in the region as untrusted input: every offset,
// index and count is bounds-checked before use.
#pragma once

#include <fcntl.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>

namespace gilstat::proto {

inline constexpr uint64_t kMagic = 0x3154415453'4c4947ULL;  // "GILSTAT1" little-endian
inline constexpr uint32_t kProtocolVersion = 6;

inline constexpr uint32_t kMaxGils = 16;
inline constexpr uint32_t kDefaultRings = 256;
inline constexpr uint32_t kMaxRings = 4096;
inline constexpr uint32_t kDefaultRingCapacity = 32768;  // events, power of two
inline constexpr uint32_t kDefaultNameSlots = 4096;     // log entries, power of two
inline constexpr size_t kNameLen = 64;
inline constexpr uint32_t kMaxModules = 512;  // objects whose C API calls are charged
inline constexpr size_t kModuleNameLen = 160;

// Upper bounds a reader accepts (docs/region.md).  The region's pages are
// charged to the target's memory cgroup, so a header asking for more than
// kMaxRegionBytes is refused rather than mapped.
inline constexpr uint32_t kMaxRingCapacity = 1u << 20;
inline constexpr uint32_t kMaxNameSlots = 1u << 16;
inline constexpr uint64_t kMaxRegionBytes = uint64_t{256} << 20;

// What one hook saw.  The probe records raw facts; the CLI reconstructs
// waits, holds and switches from them (docs/gil-internals.md).
enum class EventKind : uint8_t {
  // pthread_mutex_lock(&gil->mutex) entered by a thread that does not hold
  // this GIL: t0, the thread starts wanting the GIL.
  WaitBegin = 1,
  // pthread_cond_signal(&gil->switch_cond), issued only by take_gil right
  // after locked = 1: t1, acquired.  value = gil->last_holder (the tstate).
  Acquire = 2,
  // pthread_cond_signal(&gil->cond) by the holder, issued only by drop_gil
  // right after locked = 0: t2, released.  value = gil->last_holder.
  Release = 3,
  // pthread_cond_timedwait(&gil->cond) returned ETIMEDOUT with the GIL still
  // locked and switch_number unchanged: the waiter set the drop request.
  // value = gil->last_holder (the holder being asked to drop).
  DropRequest = 4,
  // pthread_cond_wait(&gil->switch_cond) in drop_gil: a forced hand-off, the
  // dropper waits until another thread has taken the GIL.
  ForcedHandoff = 5,
  // pthread_mutex_unlock(&gil->mutex) by a thread that was waiting and never
  // acquired (3.13+ signal_active_thread, must-exit paths): the wait that
  // began at the matching WaitBegin was not a wait for the GIL.
  WaitAbort = 6,
  // Free-threaded builds: the GIL's `enabled` field as first seen at arming,
  // then every change of it (0 = disabled, INT_MAX = enabled for good, n =
  // n transient requests while modules of unknown safety initialise).
  // value = the new `enabled`.  Seen at the first GIL mutex lock after the
  // change (the take_gil after an enable, the drop_gil after a disable), or
  // by the probe thread within ~20 ms (main GIL).  Never on GIL builds.
  GilEnabled = 7,
  // A WaitBegin and its Acquire in one event, for a thread that got the GIL
  // within kShortWaitMax clock units of asking (an uncontended re-take: a
  // thread cycling the GIL as fast as it can writes two events per cycle
  // instead of three).  ts = the Acquire's, seq = its serial number; value =
  // gil->last_holder | (the wait in clock units << 48).  The CLI splits it
  // back into the two events as it drains (ShmRegion::drain), so nothing
  // after the drain, recordings included, ever sees this kind.  A wait that
  // blocks, or lasts longer, or a holder address of 48 bits or more, is
  // written as the two events.
  ShortWaitAcquire = 8,
};
inline constexpr uint64_t kShortWaitMax = 0xffff;
inline constexpr uint64_t kShortWaitHolderMask = (uint64_t{1} << 48) - 1;

// One fixed-size record.  ts is raw clock units (Header::clock_kind).
struct Event {
  uint64_t ts;
  uint64_t value;
  // Per-GIL serial number of the events issued under gil->mutex (Acquire,
  // Release, DropRequest), starting at 1; 0 for the others.  It gives the
  // CLI a total order of hand-offs across the per-thread rings.
  uint32_t seq;
  uint8_t kind;  // EventKind
  uint8_t gil;   // index into Header::gils
  uint16_t reserved;
};
static_assert(sizeof(Event) == 24);

enum class ClockKind : uint32_t {
  Monotonic = 1,  // CLOCK_MONOTONIC nanoseconds
  Tsc = 2,        // rdtsc ticks; only where the kernel clocksource is "tsc"
};

// Probe status, written by the probe, read by the CLI.
enum class Status : uint32_t {
  Idle = 0,                // no CPython process has claimed the region (yet)
  Armed = 1,               // hooks installed, GIL known, recording
  HooksInstalled = 2,      // hooks installed, waiting for the GIL to be created
  UnsupportedVersion = 3,  // CPython found, version outside 3.8–3.15
  NoGilFound = 4,          // layout did not validate
  HookFailed = 5,          // could not patch the interpreter's GOT
  Stopped = 6,             // hooks removed
  GilDisabled = 7,         // free-threaded build running without a GIL
};

// gilstat_probe_start returns the region's fd (>= 0), -errno, or, when the
// probe itself refuses, -(kStartStatusBase + Status): far below any errno
// (the kernel's are < 4096), so the two cannot be confused.
inline constexpr int64_t kStartStatusBase = int64_t{1} << 20;
inline constexpr int64_t start_failure(Status s) {
  return -(kStartStatusBase + static_cast<int64_t>(s));
}
inline constexpr bool is_status_failure(int64_t rc) { return rc <= -kStartStatusBase; }
inline constexpr Status status_of_failure(int64_t rc) {
  return static_cast<Status>(-rc - kStartStatusBase);
}

enum RingFlags : uint32_t {
  kRingOwnThread = 1u << 0,  // the probe's own thread (name reader)
};

enum class RingState : uint32_t {
  Free = 0,
  Active = 1,    // owned by a live thread
  Closed = 2,    // its thread exited; the CLI drains it and sets it Free
  Claiming = 3,  // a thread is filling in tid/flags; not yet readable
};

struct GilSlot {
  uint64_t address;                          // &_gil_runtime_state in the target
  uint64_t initial_switch_number;            // gil->switch_number when armed
  uint64_t initial_holder;                   // gil->last_holder when armed
  std::atomic<uint64_t> last_switch_number;  // updated at every Acquire
  std::atomic<uint32_t> seq;                 // last Event::seq issued
  std::atomic<uint32_t> valid;               // 1 once the fields above are set
  int64_t interp_ids[4];                     // interpreters using this GIL (-1 = none)
  uint64_t arm_ts;                           // clock at arming
  // Exact counts kept by the probe, whatever reaches the rings (a full ring
  // loses events, never these).  Written under gil->mutex, so one writer at
  // a time: relaxed load + store, no locked RMW.
  std::atomic<uint64_t> acquisitions;   // Acquire events issued
  std::atomic<uint64_t> switches;       // of them, with a tstate != the previous holder's
  std::atomic<uint64_t> drop_requests;  // DropRequest events issued
  std::atomic<uint64_t> prev_holder;    // the probe's: last_holder at the last Acquire
};

// What the probe did with one loaded object that imports the CPython
// thread-state calls (an extension module, or a library calling the C API).
enum class ModuleState : uint32_t {
  Free = 0,      // slot unused
  Hooked = 1,    // its GOT slots lead to the probe's per-module hooks
  Unloaded = 2,  // dlclose'd after it was hooked (counters kept, slots forgotten)
  Restored = 3,  // its GOT slots were given back at stop
};

// One object's calls to PyEval_SaveThread / PyEval_RestoreThread /
// PyGILState_Ensure / PyGILState_Release through its own GOT.  Written by
// any thread of the target with relaxed atomic adds (no lock); the CLI
// reads values only.  Durations in raw clock units (Header::clock_kind).
struct alignas(64) ModuleSlot {
  std::atomic<uint32_t> state;          // ModuleState
  uint32_t hooked_slots;                // GOT slots patched in it
  uint64_t base;                        // its load address (dlpi_addr)
  std::atomic<uint64_t> releases;       // PyEval_SaveThread calls
  std::atomic<uint64_t> released;       // from SaveThread's return to RestoreThread's entry
  std::atomic<uint64_t> restores;       // PyEval_RestoreThread calls
  std::atomic<uint64_t> restore_wait;   // inside RestoreThread: the wait to get the GIL back
  std::atomic<uint64_t> ensures;        // PyGILState_Ensure calls (callbacks)
  std::atomic<uint64_t> ensure_wait;    // inside PyGILState_Ensure
  std::atomic<uint64_t> gil_releases;   // PyGILState_Release calls
  std::atomic<uint64_t> callback_held;  // outermost Ensure's return to its Release's entry
  char name[kModuleNameLen];            // its path, NUL-padded (set before state leaves Free)
};
static_assert(sizeof(ModuleSlot) == 256);

struct Header {
  uint64_t magic;
  uint32_t version;
  uint32_t header_size;  // sizeof(Header) of the writer
  uint32_t ring_count;
  uint32_t ring_capacity;
  uint32_t name_slots;
  uint32_t ring_stride;  // bytes per ring incl. RingControl
  uint64_t names_offset;
  uint64_t rings_offset;
  uint64_t total_size;

  ClockKind clock_kind;                // chosen by whoever creates the region
  std::atomic<int32_t> claim_pid;      // the first CPython process CASes 0 -> getpid()
  std::atomic<uint32_t> status;        // Status
  std::atomic<uint32_t> stop_request;  // CLI asks the probe to unhook
  std::atomic<uint64_t> heartbeat;     // CLI bumps; probe watches (attach)

  // Facts about the interpreter, written by the probe before status leaves Idle.
  uint32_t py_version_hex;  // PY_VERSION_HEX
  uint8_t free_threaded;
  uint8_t libpython_shared;  // 1: libpython3.x.so, 0: static in the executable
  uint16_t reserved0;
  char py_version[64];      // Py_GetVersion() up to the first space
  char interp_object[256];  // path of the object whose GOT is patched
  char status_detail[256];  // human-readable reason for a non-Armed status

  std::atomic<uint64_t> drops_no_ring;  // events lost: all rings in use
  std::atomic<uint32_t> gil_count;
  uint32_t reserved1;
  GilSlot gils[kMaxGils];
  std::atomic<uint32_t> hooks_installed;  // number of GOT slots patched
  std::atomic<uint32_t> hooks_restored;   // number of GOT slots restored
  // Bumped by the probe at every (re)start after an attach: a new consumer
  // session.  Events left in the rings from an earlier session are dropped
  // by the probe before the new one starts.
  std::atomic<uint32_t> session;
  // 1 when the probe unhooks itself if `heartbeat` stops moving (attach).
  uint32_t heartbeat_watch;
  // Free-threaded builds: what the probe thread saw of the main GIL's
  // `enabled` field (sampled every ~20 ms).  Default builds set enabled_seen.
  std::atomic<uint32_t> gil_enabled_seen;
  std::atomic<uint32_t> gil_disabled_seen;
  std::atomic<uint32_t> gil_enabled_now;  // the latest sample
  // CLOCK_MONOTONIC (ns) of the CLI's latest heartbeat, written with it.
  // The probe judges the heartbeat's age by it (when it reads as the same
  // clock as its own), so a probe thread that was blocked for a while (e.g.
  // waiting for the GIL to read thread names) does not restart the timeout
  // on its return.  0 from a CLI that does not write it.
  std::atomic<uint64_t> heartbeat_ns;
  // The name log's next index (see NameSlot), and where the current
  // consumer session's entries begin (a CLI that attaches reads from there:
  // older entries may name threads whose tids were reused since).
  std::atomic<uint64_t> name_head;
  std::atomic<uint64_t> name_start;
  // Per-module accounting of the C API's thread-state calls (protocol 4).
  // Slots [0, module_count) are in use; module_count only grows within a
  // consumer session.  Calls made without a GOT (inside the interpreter
  // object: builtins, libpython, the eval loop) are in no slot.
  std::atomic<uint32_t> module_count;
  std::atomic<uint32_t> modules_not_hooked;  // objects left out: the table was full
  ModuleSlot modules[kMaxModules];
  // 1 + the highest ring index ever claimed (protocol 5): rings are claimed
  // lowest free index first, so a consumer scans [0, rings_claimed) instead
  // of every ring.  Only grows for the region's life (a ring that is freed
  // stays below it).  Raised by the claiming thread before the ring turns
  // Active; a consumer that reads it before a claim finds that ring at its
  // next drain.
  std::atomic<uint32_t> rings_claimed;
  uint32_t reserved2;
};

// What a thread was doing on one GIL at its latest state change.
enum class TotalsState : uint32_t { None = 0, Waiting = 1, Holding = 2, Released = 3 };

// One thread's exact totals on one GIL, kept by the probe at every state
// change with the same rules the CLI applies to the events
// (docs/gil-internals.md, "Reconstruction rules"), so that they stay exact
// when a full ring loses events.  Durations in raw clock units, closed
// stretches only: the stretch since `since` is still running.  Single
// writer (the ring's thread): a seqlock, odd while a change is being
// written, lets the CLI take a consistent copy without the writer ever
// waiting.
struct alignas(64) ThreadTotals {
  std::atomic<uint32_t> seq;
  std::atomic<uint32_t> state;     // TotalsState
  std::atomic<uint64_t> first_ts;  // the first state change
  std::atomic<uint64_t> since;     // the latest state change
  std::atomic<uint64_t> wait;
  std::atomic<uint64_t> held;
  std::atomic<uint64_t> released;
  std::atomic<uint64_t> acquisitions;
  std::atomic<uint64_t> forced_handoffs;
};
static_assert(sizeof(ThreadTotals) == 64);

struct alignas(64) RingControl {
  std::atomic<uint32_t> state;  // RingState
  uint32_t tid;
  uint32_t flags;       // RingFlags
  uint32_t generation;  // bumped at every claim
  uint64_t pthread_id;
  alignas(64) std::atomic<uint64_t> head;  // producer: next slot to write
  std::atomic<uint64_t> dropped;           // producer: events lost, ring full
  alignas(64) std::atomic<uint64_t> tail;  // consumer: next slot to read
  // Probe: Header::session when the thread last reset `totals` (a thread
  // keeps its ring across consumer sessions and resets them itself, being
  // their only writer); the CLI ignores totals of another session.
  alignas(64) std::atomic<uint32_t> totals_session;
  ThreadTotals totals[kMaxGils];  // by GIL index
};

// Where a name came from.
enum class NameSource : uint32_t {
  ThreadStart = 1,  // read by the creating thread when it started the thread
  Poll = 2,         // read by the probe thread from threading._active
};

// One entry of the name log, a ring of name_slots entries that any thread
// appends to: the writer takes index i = name_head++ and writes slot
// i % name_slots under a seqlock whose value says which index the slot
// holds: 2i+1 while it is being written, 2i+2 once complete.  A reader that
// falls more than name_slots behind loses the oldest entries (and knows it).
struct NameSlot {
  std::atomic<uint64_t> seq;
  uint32_t tid;
  uint32_t source;      // NameSource
  uint64_t ts;          // clock (Header::clock_kind) when written
  char name[kNameLen];  // UTF-8, NUL-padded; may be cut at kNameLen - 1 bytes
};
static_assert(sizeof(NameSlot) == 88);

inline constexpr size_t ring_stride(uint32_t capacity) {
  return sizeof(RingControl) + sizeof(Event) * capacity;
}

inline constexpr size_t align_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

// Computes the layout for a region; used by whoever creates it.
struct Layout {
  uint32_t ring_count;
  uint32_t ring_capacity;
  uint32_t name_slots;
  uint64_t names_offset;
  uint64_t rings_offset;
  uint64_t total_size;
};

inline constexpr Layout make_layout(uint32_t rings, uint32_t capacity, uint32_t names) {
  Layout l{rings, capacity, names, 0, 0, 0};
  l.names_offset = align_up(sizeof(Header), 64);
  l.rings_offset = align_up(l.names_offset + sizeof(NameSlot) * names, 4096);
  l.total_size = align_up(l.rings_offset + ring_stride(capacity) * rings, 4096);
  return l;
}

static_assert(make_layout(kDefaultRings, kDefaultRingCapacity, kDefaultNameSlots).total_size <=
              kMaxRegionBytes);

// The seals whoever creates the region puts on its memfd once it is sized:
// its size can never change again, so no side can be made to fault
// (SIGBUS) on a page the other side truncated away.  A reader that gets
// exactly these seals back from F_GET_SEALS knows the fd is such a memfd.
inline constexpr int kRegionSeals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;

// What is wrong with a region's layout fields (as read once from its
// header) for a region of file_size bytes, or nullptr when they fit.  All
// sums are checked: no offset + size can wrap.
inline const char* layout_problem(const Layout& l, uint64_t ring_stride_field, uint64_t file_size) {
  auto pow2 = [](uint32_t v) { return v != 0 && (v & (v - 1)) == 0; };
  if (file_size > kMaxRegionBytes) return "it is larger than gilstat's limit";
  if (l.total_size != file_size) return "its size field differs from its file size";
  if (l.ring_count == 0 || l.ring_count > kMaxRings) return "its ring count is out of range";
  if (!pow2(l.ring_capacity) || l.ring_capacity > kMaxRingCapacity)
    return "its ring capacity is not a power of two in range";
  if (ring_stride_field != ring_stride(l.ring_capacity))
    return "its ring stride does not match the ring capacity";
  if (!pow2(l.name_slots) || l.name_slots > kMaxNameSlots)
    return "its name slot count is not a power of two in range";
  // Counts are bounded above, so the products cannot overflow.
  const uint64_t names_bytes = uint64_t{l.name_slots} * sizeof(NameSlot);
  const uint64_t rings_bytes = uint64_t{l.ring_count} * ring_stride(l.ring_capacity);
  uint64_t names_end = 0, rings_end = 0;
  if (l.names_offset < sizeof(Header) || l.names_offset % alignof(NameSlot) != 0 ||
      __builtin_add_overflow(l.names_offset, names_bytes, &names_end))
    return "its name log offset is out of range";
  if (l.rings_offset < names_end || l.rings_offset % alignof(RingControl) != 0 ||
      __builtin_add_overflow(l.rings_offset, rings_bytes, &rings_end) || rings_end > file_size)
    return "its rings do not fit in it";
  return nullptr;
}

// Writes a fresh header at the start of a zero-filled region of
// layout.total_size bytes.  Whoever creates the region (the CLI under `run`,
// the probe after an attach) calls this; every ring starts Free.
inline Header* init_header(void* base, const Layout& layout, ClockKind clock) {
  auto* h = new (base) Header{};
  h->magic = kMagic;
  h->version = kProtocolVersion;
  h->header_size = sizeof(Header);
  h->ring_count = layout.ring_count;
  h->ring_capacity = layout.ring_capacity;
  h->name_slots = layout.name_slots;
  h->ring_stride = static_cast<uint32_t>(ring_stride(layout.ring_capacity));
  h->names_offset = layout.names_offset;
  h->rings_offset = layout.rings_offset;
  h->total_size = layout.total_size;
  h->clock_kind = clock;
  return h;
}

// Environment variables between `gilstat run` and the preloaded probe.
inline constexpr const char* kEnvShmFd = "GILSTAT_SHM_FD";
inline constexpr const char* kEnvFollowChildren = "GILSTAT_FOLLOW_CHILDREN";

}  // namespace gilstat::proto

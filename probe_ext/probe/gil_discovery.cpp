// Finding the GILs: arming on the main interpreter's GIL once the
// interpreter has created it, subinterpreters' own GILs (3.12+) as they are
// created or, after an attach, as they exist, and the free-threaded `enabled`
// history.  try_arm and note_gil_enabled run on the hook path (plain loads
// of memory known to be mapped, no calls).  note_mutex_init runs in our
// pthread_mutex_init hook, not a GIL call: for the rare pair of inits that
// looks like create_gil() it reads with safe_read (a syscall).  The walk of
// existing interpreters reads with safe_read too, off the hook path.
#include <atomic>

#include "probe_state.hpp"

namespace gilstat::probe {
namespace {

// Emits GilEnabled for GIL i unless `enabled` is the value last emitted;
// the CAS lets only one of several threads that saw a change report it.
void emit_enabled(int i, int32_t enabled, uint64_t ts) {
  int32_t last = g.enabled_emitted[i].load(std::memory_order_relaxed);
  if (enabled == last ||
      !g.enabled_emitted[i].compare_exchange_strong(last, enabled, std::memory_order_relaxed))
    return;
  emit_event(proto::EventKind::GilEnabled, i, static_cast<uint32_t>(enabled), 0, ts);
}

// Fills a free slot for a GIL at `base` and makes it visible to the hooks.
// Slots are allocated with fetch_add and the count only grows, so a hook
// scanning the table sees either a complete slot or zero addresses (which
// match nothing).
void publish_gil(uintptr_t base, int64_t interp_id) {
  const uint32_t index = g.gils_allocated.fetch_add(1, std::memory_order_relaxed);
  if (index >= proto::kMaxGils) return;  // table full: that GIL is not measured
  proto::GilSlot& s = g.header->gils[index];
  s.address = base;
  s.initial_switch_number = read_u64(base + g.fields.switch_number);
  s.initial_holder = read_u64(base + g.fields.last_holder);
  s.last_switch_number.store(s.initial_switch_number, std::memory_order_relaxed);
  s.seq.store(0, std::memory_order_relaxed);
  s.acquisitions.store(0, std::memory_order_relaxed);
  s.switches.store(0, std::memory_order_relaxed);
  s.drop_requests.store(0, std::memory_order_relaxed);
  s.prev_holder.store(s.initial_holder, std::memory_order_relaxed);
  for (auto& id : s.interp_ids) id = -1;
  s.interp_ids[0] = interp_id;
  s.arm_ts = now_raw_clock();
  // Armed while held (an attach): remember which thread holds it.
  g.holder_at_arm[index].store(0, std::memory_order_relaxed);
  if (read_i32(base + g.fields.locked) == 1 && s.initial_holder && g.locator.tstate_thread_id)
    g.holder_at_arm[index].store(read_u64(s.initial_holder + g.locator.tstate_thread_id),
                                 std::memory_order_relaxed);
  s.valid.store(1, std::memory_order_release);
  // The state at arming opens the GilEnabled history of this GIL.
  g.enabled_emitted[index].store(kEnabledUnseen, std::memory_order_relaxed);
  if (g.locator.free_threaded)
    emit_enabled(static_cast<int>(index), read_i32(base + g.fields.enabled), s.arm_ts);
  GilAddrs& a = g.gils[index];
  a.base = base;
  a.cond = base + g.fields.cond;
  a.switch_cond = base + g.fields.switch_cond;
  a.mutex = base + g.fields.mutex;
  for (uint32_t n = g.gil_count.load(); n < index + 1;)
    g.gil_count.compare_exchange_weak(n, index + 1, std::memory_order_release);
  for (uint32_t n = g.header->gil_count.load(); n < index + 1;)
    g.header->gil_count.compare_exchange_weak(n, index + 1, std::memory_order_release);
}

// Adds an interpreter id to the slot of a known GIL (shared-GIL
// subinterpreters, or a new interpreter reusing a freed one's address).
void note_interpreter(int gil, int64_t interp_id) {
  auto& ids = g.header->gils[gil].interp_ids;
  for (auto& id : ids) {
    if (id == interp_id) return;
    if (id < 0) {
      id = interp_id;
      return;
    }
  }
}

void register_gil(uintptr_t base, int64_t interp_id) {
  const uint32_t n = g.gil_count.load(std::memory_order_acquire);
  for (uint32_t i = 0; i < n; ++i) {
    if (g.gils[i].base == base) {
      note_interpreter(static_cast<int>(i), interp_id);
      return;
    }
  }
  publish_gil(base, interp_id);
}

// 3.12+: create_gil() initialises gil->mutex and then gil->switch_mutex, 88
// bytes further (the same in default and free-threaded layouts).  Two
// consecutive inits at that distance, with the struct still marked "not
// created" (locked == -1) and a sane switch interval, are a new GIL: a
// subinterpreter with its own GIL, created after arming.
std::atomic<uintptr_t> g_last_mutex_init{0};

}  // namespace

void note_mutex_init(uintptr_t addr) {
  if (g.locator.minor < 12 || g.gil_count.load(std::memory_order_acquire) == 0) return;
  const uintptr_t prev = g_last_mutex_init.exchange(addr, std::memory_order_relaxed);
  const uint32_t gap = g.fields.switch_mutex - g.fields.mutex;
  if (!prev || addr != prev + gap) return;
  // Two inits 88 bytes apart are almost surely a GIL, but the struct's
  // start and its interpreter lie before the first mutex, in memory we have
  // not seen mapped: read them without faulting (mutex inits are rare).
  const uintptr_t base = prev - g.fields.mutex;
  uint64_t interval = 0;
  int32_t locked = 0;
  if (!safe_read(base + g.fields.interval, &interval, sizeof(interval)) ||
      !safe_read(base + g.fields.locked, &locked, sizeof(locked)))
    return;
  if (locked != -1 || interval == 0 || interval >= 1000000000ull) return;
  int64_t interp_id = -1;
  if (!safe_read(base - g.locator.own_gil_storage + g.locator.interp_id, &interp_id,
                 sizeof(interp_id)))
    return;
  register_gil(base, interp_id);
}

void note_gil_enabled(int i) {
  const int32_t enabled = read_i32(g.gils[i].base + g.fields.enabled);
  if (enabled != g.enabled_emitted[i].load(std::memory_order_relaxed))
    emit_enabled(i, enabled, now_raw_clock());
}

bool try_arm() {
  if (g.gil_count.load(std::memory_order_acquire) != 0) {
    g.want_arm.store(0, std::memory_order_relaxed);
    return true;
  }
  const GilLocator& loc = g.locator;
  uintptr_t gil = loc.fixed_gil;
  if (!gil) {
    const uintptr_t main = static_cast<uintptr_t>(read_u64(loc.interpreters_main));
    if (!main) return false;
    // The main interpreter is embedded in _PyRuntime: a pointer elsewhere
    // means the layout is wrong, and following it could fault.
    const uintptr_t runtime_end = loc.runtime + loc.runtime_size;
    if (main < loc.runtime || main + loc.ceval_gil + 8 > runtime_end ||
        main + loc.own_gil_storage + g.fields.size > runtime_end) {
      g.want_arm.store(0, std::memory_order_relaxed);
      g.header->status.store(static_cast<uint32_t>(proto::Status::NoGilFound),
                             std::memory_order_release);
      return false;
    }
    gil = static_cast<uintptr_t>(read_u64(main + loc.ceval_gil));
    if (!gil) return false;  // not created yet: take_gil has not run
    if (gil != main + loc.own_gil_storage) {
      // The main interpreter always uses its embedded _gil; anything else
      // means the layout table is wrong for this build.
      g.want_arm.store(0, std::memory_order_relaxed);
      g.header->status.store(static_cast<uint32_t>(proto::Status::NoGilFound),
                             std::memory_order_release);
      return false;
    }
  }
  // Arming can race between threads only before the GIL exists, i.e. while
  // the interpreter is single-threaded; the CAS makes it a one-shot anyway.
  int expected = 1;
  if (!g.want_arm.compare_exchange_strong(expected, 0)) return false;
  publish_gil(gil, 0);
  sample_gil_enabled();
  g.header->status.store(static_cast<uint32_t>(proto::Status::Armed), std::memory_order_release);
  g.recording.store(1, std::memory_order_release);
  return true;
}

void register_existing_gils() {
  const GilLocator& loc = g.locator;
  if (loc.minor < 12 || !loc.interpreters_head || g.gil_count.load() == 0) return;
  // Unlocked walk (HEAD_LOCK is not ours to take) of memory another thread
  // may free meanwhile: every read is a safe_read, the walk is bounded, and
  // a GIL is only taken when its struct reads back as a created GIL.
  uintptr_t interp = 0;
  if (!safe_read(loc.interpreters_head, &interp, sizeof(interp))) return;
  for (int n = 0; interp && n < 64; ++n) {
    uintptr_t gil = 0, next = 0;
    int64_t id = -1;
    if (!safe_read(interp + loc.ceval_gil, &gil, sizeof(gil)) ||
        !safe_read(interp + loc.interp_id, &id, sizeof(id)) ||
        !safe_read(interp + loc.interp_next, &next, sizeof(next)))
      return;
    uint64_t interval = 0;
    int32_t locked = -1;
    if (gil && safe_read(gil + g.fields.interval, &interval, sizeof(interval)) &&
        safe_read(gil + g.fields.locked, &locked, sizeof(locked)) && (locked == 0 || locked == 1) &&
        interval > 0 && interval < 1000000000ull)
      register_gil(gil, id);
    interp = next;
  }
}

}  // namespace gilstat::probe

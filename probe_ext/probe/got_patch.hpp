// The only place that writes GOT slots.  One object (the one that contains
// the interpreter) gets its relocations for a small set of symbols pointed at
// our hooks; restore() puts the saved values back.
#pragma once

#include <link.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace gilstat::probe {

struct HookSpec {
  const char* name;  // symbol as imported by the interpreter object
  void* hook;        // our replacement
};

struct PatchedSlot {
  uintptr_t* slot;
  uintptr_t saved;  // value before patching (may be a lazy-binding stub)
  uintptr_t hook;
};

inline constexpr size_t kMaxPatchedSlots = 32;

// patch() and restore() may be asked for by several threads (the thread
// that starts the probe, the probe thread stopping on a stale heartbeat,
// the Python module, a fork child): they are serialised by a try-lock that
// never blocks, because a restore can be asked for from inside a hook (the
// probe thread's own GIL wait).  A caller that does not get it defers.
class GotPatcher {
 public:
  bool try_lock() {
    bool expected = false;
    return busy_.compare_exchange_strong(expected, true, std::memory_order_acquire);
  }
  void unlock() { busy_.store(false, std::memory_order_release); }
  // A fork child has one thread: a lock held by a thread of the parent is
  // nobody's there.
  void reset_lock_after_fork() { busy_.store(false, std::memory_order_relaxed); }

  // Patches every JUMP_SLOT / GLOB_DAT relocation of `map` whose symbol is in
  // specs.  Returns the number of slots patched, or -1 on a malformed object.
  // patch() and restore() must be called with the lock held.
  int patch(const link_map* map, const HookSpec* specs, size_t nspecs);
  // Restores every slot still pointing at our hook.  Returns slots restored.
  int restore();
  size_t patched() const { return count_; }

 private:
  PatchedSlot slots_[kMaxPatchedSlots] = {};
  size_t count_ = 0;
  uintptr_t relro_begin_ = 0, relro_end_ = 0;  // PT_GNU_RELRO of the patched object
  std::atomic<bool> busy_{false};
};

}  // namespace gilstat::probe

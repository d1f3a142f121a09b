// The only place that writes GOT slots.  One object (the one that contains
// the interpreter) gets its relocations for a small set of symbols pointed at
// our hooks; restore() puts the saved values back.
#pragma once

#include <link.h>

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

class GotPatcher {
 public:
  // Patches every JUMP_SLOT / GLOB_DAT relocation of `map` whose symbol is in
  // specs.  Returns the number of slots patched, or -1 on a malformed object.
  int patch(const link_map* map, const HookSpec* specs, size_t nspecs);
  // Restores every slot still pointing at our hook.  Returns slots restored.
  int restore();
  size_t patched() const { return count_; }

 private:
  PatchedSlot slots_[kMaxPatchedSlots] = {};
  size_t count_ = 0;
  uintptr_t relro_begin_ = 0, relro_end_ = 0;  // PT_GNU_RELRO of the patched object
};

}  // namespace gilstat::probe

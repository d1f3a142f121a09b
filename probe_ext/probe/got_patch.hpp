// The only place that writes GOT slots.  One object (the one that contains
// the interpreter) gets its relocations for a small set of symbols pointed at
// our hooks; restore() puts the saved values back.
#pragma once

#include <elf.h>
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

// The dynamic-linking tables of one loaded object.
struct DynInfo {
  const ElfW(Sym) * symtab = nullptr;
  const char* strtab = nullptr;
  size_t strsz = 0;
  const ElfW(Rela) * jmprel = nullptr;
  size_t jmprelsz = 0;
  const ElfW(Rela) * rela = nullptr;
  size_t relasz = 0;
};

// Reads the tables of the object loaded at `base` whose dynamic section is
// `ld`.  False when it has no symbol or string table.
bool read_dynamic(uintptr_t base, const ElfW(Dyn) * ld, DynInfo* out);

// Calls fn(name, slot) for every JUMP_SLOT / GLOB_DAT relocation of the
// object; fn returns false to stop.
template <typename Fn>
void for_each_import(const DynInfo& dyn, uintptr_t base, Fn fn) {
  auto visit = [&](const ElfW(Rela) * rels, size_t bytes) {
    if (!rels) return true;
    for (size_t i = 0; i < bytes / sizeof(ElfW(Rela)); ++i) {
      const ElfW(Rela)& r = rels[i];
      const auto type = ELF64_R_TYPE(r.r_info);
      if (type != R_X86_64_JUMP_SLOT && type != R_X86_64_GLOB_DAT) continue;
      const ElfW(Sym)& sym = dyn.symtab[ELF64_R_SYM(r.r_info)];
      if (dyn.strsz && sym.st_name >= dyn.strsz) continue;
      if (!fn(dyn.strtab + sym.st_name, reinterpret_cast<uintptr_t*>(base + r.r_offset)))
        return false;
    }
    return true;
  };
  if (visit(dyn.jmprel, dyn.jmprelsz)) visit(dyn.rela, dyn.relasz);
}

// Stores `value` in a GOT slot, making its page writable for the one store
// when it lies in [relro_begin, relro_end) (PT_GNU_RELRO).
bool write_slot(uintptr_t* slot, uintptr_t value, uintptr_t relro_begin, uintptr_t relro_end);

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

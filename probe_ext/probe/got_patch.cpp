// GOT patching.  Model: heaptrack's heaptrack_inject.cpp and memray's
// elf_shenanigans.cpp (read, not copied).
//
// Why both JUMP_SLOT and GLOB_DAT: lazy/partial-RELRO builds (Debian, pyenv)
// call through .got.plt JUMP_SLOTs; -fno-plt or -z now builds may call
// through GLOB_DAT entries in .got instead.  A slot inside PT_GNU_RELRO is
// read-only after start-up (full RELRO), so it is made writable for the one
// store and protected again.
#include "got_patch.hpp"

#include <elf.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <utility>

namespace gilstat::probe {
namespace {

// glibc rewrites most d_ptr values of a writable .dynamic to absolute
// addresses, but not every loader/object does; an unrelocated value is a
// small offset below the load base.
uintptr_t absolute(uintptr_t base, uintptr_t p) { return (base != 0 && p < base) ? p + base : p; }

struct RelroRange {
  uintptr_t begin = 0, end = 0;
};

int find_relro(dl_phdr_info* info, size_t, void* data) {
  auto* ctx = static_cast<std::pair<uintptr_t, RelroRange>*>(data);
  if (info->dlpi_addr != ctx->first) return 0;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type == PT_GNU_RELRO) {
      ctx->second.begin = info->dlpi_addr + ph.p_vaddr;
      ctx->second.end = ctx->second.begin + ph.p_memsz;
      return 1;
    }
  }
  return 1;
}

RelroRange relro_of(const link_map* map) {
  std::pair<uintptr_t, RelroRange> ctx{map->l_addr, {}};
  dl_iterate_phdr(find_relro, &ctx);
  return ctx.second;
}

}  // namespace

bool read_dynamic(uintptr_t base, const ElfW(Dyn) * ld, DynInfo* out) {
  if (!ld) return false;
  for (const ElfW(Dyn)* d = ld; d->d_tag != DT_NULL; ++d) {
    switch (d->d_tag) {
      case DT_SYMTAB:
        out->symtab = reinterpret_cast<const ElfW(Sym)*>(absolute(base, d->d_un.d_ptr));
        break;
      case DT_STRTAB:
        out->strtab = reinterpret_cast<const char*>(absolute(base, d->d_un.d_ptr));
        break;
      case DT_STRSZ:
        out->strsz = d->d_un.d_val;
        break;
      case DT_JMPREL:
        out->jmprel = reinterpret_cast<const ElfW(Rela)*>(absolute(base, d->d_un.d_ptr));
        break;
      case DT_PLTRELSZ:
        out->jmprelsz = d->d_un.d_val;
        break;
      case DT_RELA:
        out->rela = reinterpret_cast<const ElfW(Rela)*>(absolute(base, d->d_un.d_ptr));
        break;
      case DT_RELASZ:
        out->relasz = d->d_un.d_val;
        break;
      default:
        break;
    }
  }
  return out->symtab && out->strtab;
}

bool write_slot(uintptr_t* slot, uintptr_t value, uintptr_t relro_begin, uintptr_t relro_end) {
  const auto addr = reinterpret_cast<uintptr_t>(slot);
  if (addr >= relro_begin && addr < relro_end) {
    const uintptr_t page = addr & ~(static_cast<uintptr_t>(getpagesize()) - 1);
    if (mprotect(reinterpret_cast<void*>(page), getpagesize(), PROT_READ | PROT_WRITE) != 0)
      return false;
    __atomic_store_n(slot, value, __ATOMIC_RELEASE);
    mprotect(reinterpret_cast<void*>(page), getpagesize(), PROT_READ);
    return true;
  }
  __atomic_store_n(slot, value, __ATOMIC_RELEASE);
  return true;
}

int GotPatcher::patch(const link_map* map, const HookSpec* specs, size_t nspecs) {
  DynInfo dyn;
  if (!read_dynamic(map->l_addr, map->l_ld, &dyn)) return -1;
  const RelroRange relro = relro_of(map);
  relro_begin_ = relro.begin;
  relro_end_ = relro.end;
  int patched = 0;
  for_each_import(dyn, map->l_addr, [&](const char* name, uintptr_t* slot) {
    for (size_t s = 0; s < nspecs; ++s) {
      if (std::strcmp(name, specs[s].name) != 0) continue;
      if (count_ == kMaxPatchedSlots) return false;
      const uintptr_t hook = reinterpret_cast<uintptr_t>(specs[s].hook);
      const uintptr_t saved = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
      if (saved == hook) break;  // already ours (a second start)
      if (!write_slot(slot, hook, relro.begin, relro.end)) break;
      slots_[count_++] = {slot, saved, hook};
      ++patched;
      break;
    }
    return true;
  });
  return patched;
}

int GotPatcher::restore() {
  int restored = 0;
  for (size_t i = 0; i < count_; ++i) {
    PatchedSlot& p = slots_[i];
    // Someone else may have re-patched the slot after us: leave theirs alone.
    if (__atomic_load_n(p.slot, __ATOMIC_ACQUIRE) != p.hook) continue;
    if (write_slot(p.slot, p.saved, relro_begin_, relro_end_)) ++restored;
  }
  count_ = 0;
  return restored;
}

}  // namespace gilstat::probe

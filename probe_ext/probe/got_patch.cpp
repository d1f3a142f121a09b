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

struct DynInfo {
  const ElfW(Sym)* symtab = nullptr;
  const char* strtab = nullptr;
  size_t strsz = 0;
  const ElfW(Rela)* jmprel = nullptr;
  size_t jmprelsz = 0;
  const ElfW(Rela)* rela = nullptr;
  size_t relasz = 0;
};

// glibc rewrites most d_ptr values of a writable .dynamic to absolute
// addresses, but not every loader/object does; an unrelocated value is a
// small offset below the load base.
uintptr_t absolute(const link_map* map, uintptr_t p) {
  return (map->l_addr != 0 && p < map->l_addr) ? p + map->l_addr : p;
}

bool read_dynamic(const link_map* map, DynInfo* out) {
  if (!map->l_ld) return false;
  for (const ElfW(Dyn)* d = map->l_ld; d->d_tag != DT_NULL; ++d) {
    switch (d->d_tag) {
      case DT_SYMTAB:
        out->symtab = reinterpret_cast<const ElfW(Sym)*>(absolute(map, d->d_un.d_ptr));
        break;
      case DT_STRTAB:
        out->strtab = reinterpret_cast<const char*>(absolute(map, d->d_un.d_ptr));
        break;
      case DT_STRSZ: out->strsz = d->d_un.d_val; break;
      case DT_JMPREL:
        out->jmprel = reinterpret_cast<const ElfW(Rela)*>(absolute(map, d->d_un.d_ptr));
        break;
      case DT_PLTRELSZ: out->jmprelsz = d->d_un.d_val; break;
      case DT_RELA:
        out->rela = reinterpret_cast<const ElfW(Rela)*>(absolute(map, d->d_un.d_ptr));
        break;
      case DT_RELASZ: out->relasz = d->d_un.d_val; break;
      default: break;
    }
  }
  return out->symtab && out->strtab;
}

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

bool write_slot(uintptr_t* slot, uintptr_t value, const RelroRange& relro) {
  const auto addr = reinterpret_cast<uintptr_t>(slot);
  if (addr >= relro.begin && addr < relro.end) {
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

RelroRange relro_of(const link_map* map) {
  std::pair<uintptr_t, RelroRange> ctx{map->l_addr, {}};
  dl_iterate_phdr(find_relro, &ctx);
  return ctx.second;
}

}  // namespace

int GotPatcher::patch(const link_map* map, const HookSpec* specs, size_t nspecs) {
  DynInfo dyn;
  if (!read_dynamic(map, &dyn)) return -1;
  const RelroRange relro = relro_of(map);
  relro_begin_ = relro.begin;
  relro_end_ = relro.end;
  int patched = 0;
  auto visit = [&](const ElfW(Rela)* rels, size_t bytes) {
    if (!rels) return;
    for (size_t i = 0; i < bytes / sizeof(ElfW(Rela)); ++i) {
      const ElfW(Rela)& r = rels[i];
      const auto type = ELF64_R_TYPE(r.r_info);
      if (type != R_X86_64_JUMP_SLOT && type != R_X86_64_GLOB_DAT) continue;
      const ElfW(Sym)& sym = dyn.symtab[ELF64_R_SYM(r.r_info)];
      if (dyn.strsz && sym.st_name >= dyn.strsz) continue;
      const char* name = dyn.strtab + sym.st_name;
      for (size_t s = 0; s < nspecs; ++s) {
        if (std::strcmp(name, specs[s].name) != 0) continue;
        if (count_ == kMaxPatchedSlots) return;
        auto* slot = reinterpret_cast<uintptr_t*>(map->l_addr + r.r_offset);
        const uintptr_t hook = reinterpret_cast<uintptr_t>(specs[s].hook);
        const uintptr_t saved = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
        if (saved == hook) break;  // already ours (a second start)
        if (!write_slot(slot, hook, relro)) break;
        slots_[count_++] = {slot, saved, hook};
        ++patched;
        break;
      }
    }
  };
  visit(dyn.jmprel, dyn.jmprelsz);
  visit(dyn.rela, dyn.relasz);
  return patched;
}

int GotPatcher::restore() {
  int restored = 0;
  for (size_t i = 0; i < count_; ++i) {
    PatchedSlot& p = slots_[i];
    // Someone else may have re-patched the slot after us: leave theirs alone.
    if (__atomic_load_n(p.slot, __ATOMIC_ACQUIRE) != p.hook) continue;
    if (write_slot(p.slot, p.saved, {relro_begin_, relro_end_})) ++restored;
  }
  count_ = 0;
  return restored;
}

}  // namespace gilstat::probe

// Per-module accounting: which loaded object releases the GIL, and which
// calls back into Python.  Every object that imports PyEval_SaveThread,
// PyEval_RestoreThread, PyGILState_Ensure or PyGILState_Release through its
// GOT (extension modules, libraries calling the C API) gets those slots
// pointed at hooks of its own: one instantiation per table index, so a hook
// knows its module without a lookup.  The interpreter object itself is never
// patched: its own calls (builtins, the eval loop, libpython) go through no
// GOT and are charged to the interpreter by the CLI.
//
// Hook path: two clock reads and relaxed atomic adds on the module's slot of
// the region, one initial-exec TLS record; no allocation, lock or syscall.
// Objects are found by dl_iterate_phdr at arm, from the dlsym hook (CPython
// looks up PyInit_<name> right after dlopen, before the module runs) and
// from the probe thread (objects loaded by ctypes or other libraries).
#include <dlfcn.h>
#include <link.h>
#include <time.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <utility>

#include "got_patch.hpp"
#include "module_scan.hpp"
#include "probe_state.hpp"

namespace gilstat::probe {
namespace {

using SaveFn = void* (*)();
using RestoreFn = void (*)(void*);
using EnsureFn = int (*)();
using ReleaseFn = void (*)(int);
SaveFn real_save;
RestoreFn real_restore;
EnsureFn real_ensure;
ReleaseFn real_release;

// One thread's open stretches: released since (SaveThread's return), and the
// outermost PyGILState_Ensure's return.  `session` keeps a stretch opened
// before a new consumer session from being charged to it.
struct ModuleTls {
  uint64_t released_at;
  uint64_t ensure_at;
  uint32_t released_session;
  uint32_t ensure_session;
  uint32_t ensure_depth;
};
__thread ModuleTls t_mod __attribute__((tls_model("initial-exec")));

inline bool counting() { return g.recording.load(std::memory_order_acquire) != 0; }
inline uint32_t session_now() { return g.session.load(std::memory_order_relaxed); }
inline proto::ModuleSlot& slot(size_t m) { return g.header->modules[m]; }
inline void add(std::atomic<uint64_t>& c, uint64_t v) { c.fetch_add(v, std::memory_order_relaxed); }

template <size_t M>
void* hook_save() {
  void* tstate = real_save();
  if (counting()) {
    add(slot(M).releases, 1);
    t_mod.released_at = now_raw();
    t_mod.released_session = session_now();
  }
  return tstate;
}

template <size_t M>
void hook_restore(void* tstate) {
  if (!counting()) {
    t_mod.released_at = 0;
    real_restore(tstate);
    return;
  }
  const uint64_t t0 = now_raw();
  real_restore(tstate);
  const uint64_t t1 = now_raw();
  proto::ModuleSlot& s = slot(M);
  add(s.restores, 1);
  add(s.restore_wait, t1 - t0);
  // Released until the wait began: the wait itself is restore_wait.
  if (t_mod.released_at && t_mod.released_session == session_now() && t0 >= t_mod.released_at)
    add(s.released, t0 - t_mod.released_at);
  t_mod.released_at = 0;
}

template <size_t M>
int hook_ensure() {
  if (!counting()) return real_ensure();
  const uint64_t t0 = now_raw();
  const int state = real_ensure();
  const uint64_t t1 = now_raw();
  proto::ModuleSlot& s = slot(M);
  add(s.ensures, 1);
  add(s.ensure_wait, t1 - t0);
  if (t_mod.ensure_depth == 0 || t_mod.ensure_session != session_now()) {
    t_mod.ensure_depth = 0;
    t_mod.ensure_at = t1;
    t_mod.ensure_session = session_now();
  }
  ++t_mod.ensure_depth;
  return state;
}

template <size_t M>
void hook_release(int state) {
  if (counting()) {
    proto::ModuleSlot& s = slot(M);
    add(s.gil_releases, 1);
    if (t_mod.ensure_depth > 0 && --t_mod.ensure_depth == 0 &&
        t_mod.ensure_session == session_now()) {
      const uint64_t now = now_raw();
      if (now >= t_mod.ensure_at) add(s.callback_held, now - t_mod.ensure_at);
    }
  }
  real_release(state);
}

struct ModuleHooks {
  uintptr_t save, restore, ensure, release;
};

template <size_t... I>
constexpr std::array<ModuleHooks, sizeof...(I)> make_hooks(std::index_sequence<I...>) {
  return {{ModuleHooks{reinterpret_cast<uintptr_t>(&hook_save<I>),
                       reinterpret_cast<uintptr_t>(&hook_restore<I>),
                       reinterpret_cast<uintptr_t>(&hook_ensure<I>),
                       reinterpret_cast<uintptr_t>(&hook_release<I>)}...}};
}
const std::array<ModuleHooks, proto::kMaxModules> kModuleHooks =
    make_hooks(std::make_index_sequence<proto::kMaxModules>());

constexpr const char* kSymbols[4] = {"PyEval_SaveThread", "PyEval_RestoreThread",
                                     "PyGILState_Ensure", "PyGILState_Release"};
uintptr_t hook_for(size_t m, int which) {
  const ModuleHooks& h = kModuleHooks[m];
  return which == 0 ? h.save : which == 1 ? h.restore : which == 2 ? h.ensure : h.release;
}

// Probe-private: what was patched in each object of the table.
constexpr size_t kSlotsPerModule = 8;  // 4 symbols, JUMP_SLOT and GLOB_DAT
struct ModulePatch {
  uintptr_t dynamic;  // its PT_DYNAMIC address: the object's identity with its name
  uintptr_t relro_begin, relro_end;
  PatchedSlot slots[kSlotsPerModule];
  uint32_t nslots;
  bool live;  // hooked and still loaded at the last scan
  bool seen;  // found by the current walk
};
ModulePatch g_patches[proto::kMaxModules];
uint32_t g_count = 0;  // table entries in use, this session
std::atomic<bool> g_busy{false};
uintptr_t g_interp_dynamic = 0;               // never patched
uintptr_t g_own_base = 0;                     // the probe itself
std::atomic<uint64_t> g_token{~uint64_t{0}};  // dlpi_adds + dlpi_subs at the last scan

bool try_lock() {
  bool expected = false;
  return g_busy.compare_exchange_strong(expected, true, std::memory_order_acquire);
}
void unlock() { g_busy.store(false, std::memory_order_release); }

bool lock_waiting() {
  for (int i = 0; i < 2000; ++i) {  // a scan takes well under a millisecond
    if (try_lock()) return true;
    struct timespec ts {
      0, 100000
    };
    nanosleep(&ts, nullptr);
  }
  return false;
}

struct ObjectView {
  uintptr_t base = 0, dynamic = 0, relro_begin = 0, relro_end = 0;
  const char* name = nullptr;
};

ObjectView view_of(const dl_phdr_info* info) {
  ObjectView v;
  v.base = info->dlpi_addr;
  v.name = info->dlpi_name;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type == PT_DYNAMIC) v.dynamic = info->dlpi_addr + ph.p_vaddr;
    if (ph.p_type == PT_GNU_RELRO) {
      v.relro_begin = info->dlpi_addr + ph.p_vaddr;
      v.relro_end = v.relro_begin + ph.p_memsz;
    }
  }
  return v;
}

// The live table entry for this object, or -1.
int find_entry(const ObjectView& v) {
  for (uint32_t m = 0; m < g_count; ++m)
    if (g_patches[m].live && g_patches[m].dynamic == v.dynamic &&
        std::strncmp(slot(m).name, v.name, proto::kModuleNameLen - 1) == 0)
      return static_cast<int>(m);
  return -1;
}

// Whether the object imports one of the four (read-only tables, mapped
// before the object enters the loader's list).
bool imports_c_api(const ObjectView& v) {
  DynInfo dyn;
  if (!read_dynamic(v.base, reinterpret_cast<const ElfW(Dyn)*>(v.dynamic), &dyn)) return false;
  bool any = false;
  for_each_import(dyn, v.base, [&](const char* name, uintptr_t*) {
    for (const char* s : kSymbols) any |= std::strcmp(name, s) == 0;
    return !any;
  });
  return any;
}

// Whether the object now has a table entry (false: unreadable, or the table
// is full).
bool hook_object(const ObjectView& v) {
  DynInfo dyn;
  if (g_count == proto::kMaxModules) return false;
  if (!read_dynamic(v.base, reinterpret_cast<const ElfW(Dyn)*>(v.dynamic), &dyn)) return false;
  proto::Header* h = g.header;
  const uint32_t m = g_count;
  proto::ModuleSlot& s = h->modules[m];
  std::snprintf(s.name, sizeof(s.name), "%s", v.name);
  s.base = v.base;
  ModulePatch& p = g_patches[m];
  p = ModulePatch{v.dynamic, v.relro_begin, v.relro_end, {}, 0, true, true};
  for_each_import(dyn, v.base, [&](const char* name, uintptr_t* got) {
    for (int k = 0; k < 4; ++k) {
      if (std::strcmp(name, kSymbols[k]) != 0) continue;
      if (p.nslots == kSlotsPerModule) return false;
      const uintptr_t hook = hook_for(m, k);
      const uintptr_t saved = __atomic_load_n(got, __ATOMIC_ACQUIRE);
      if (saved != hook && write_slot(got, hook, v.relro_begin, v.relro_end))
        p.slots[p.nslots++] = {got, saved, hook};
      break;
    }
    return true;
  });
  s.hooked_slots = p.nslots;
  s.state.store(static_cast<uint32_t>(proto::ModuleState::Hooked), std::memory_order_release);
  g_count = m + 1;
  h->module_count.store(g_count, std::memory_order_release);
  return true;
}

// Objects a walk found that are not in the table yet.  They are hooked
// after the walk: an object being loaded is in the loader's list before its
// relocations are applied, which would overwrite our slots (and hand us
// unrelocated values to restore), so each is first opened with RTLD_NOLOAD,
// which waits for a load in progress and keeps the object from being
// unloaded until we close it.
constexpr int kMaxCandidates = 64;
struct Candidate {
  ObjectView view;
  char name[proto::kModuleNameLen];
};
Candidate g_candidates[kMaxCandidates];
int g_ncandidates = 0;
bool g_more_candidates = false;
ModuleScanCount g_scan_count;

int scan_one(dl_phdr_info* info, size_t, void*) {
  const ObjectView v = view_of(info);
  // Nameless: the executable and the vDSO (a static interpreter's
  // executable is the interpreter object).
  if (!v.name || !v.name[0] || !v.dynamic || v.dynamic == g_interp_dynamic || v.base == g_own_base)
    return 0;
  const int m = find_entry(v);
  if (m >= 0) {
    g_patches[m].seen = true;
    return 0;
  }
  if (!imports_c_api(v)) return 0;
  g_scan_count.found_new();
  if (g_ncandidates == kMaxCandidates) {
    g_more_candidates = true;
    return 0;
  }
  Candidate& c = g_candidates[g_ncandidates++];
  c.view = v;
  std::snprintf(c.name, sizeof(c.name), "%s", v.name);
  c.view.name = c.name;
  return 0;
}

void hook_candidates() {
  for (int i = 0; i < g_ncandidates && g_count < proto::kMaxModules; ++i) {
    const Candidate& c = g_candidates[i];
    void* handle = dlopen(c.name, RTLD_NOLOAD | RTLD_LAZY);
    if (!handle) continue;  // unloaded meanwhile, or a name the loader does not match
    link_map* map = nullptr;
    if (dlinfo(handle, RTLD_DI_LINKMAP, &map) == 0 && map &&
        reinterpret_cast<uintptr_t>(map->l_ld) == c.view.dynamic && map->l_addr == c.view.base &&
        hook_object(c.view))
      g_scan_count.hooked();
    dlclose(handle);
  }
}

// Runs inside dl_iterate_phdr, which holds the loader's lock: an object in
// the list cannot be unmapped before the walk ends (dlclose takes it out
// of the list under the same lock first).
int restore_one(dl_phdr_info* info, size_t, void*) {
  const ObjectView v = view_of(info);
  if (!v.name || !v.dynamic) return 0;
  const int m = find_entry(v);
  if (m < 0) return 0;
  ModulePatch& p = g_patches[m];
  for (uint32_t i = 0; i < p.nslots; ++i) {
    const PatchedSlot& ps = p.slots[i];
    // Someone else may have re-patched the slot after us: leave theirs alone.
    if (__atomic_load_n(ps.slot, __ATOMIC_ACQUIRE) == ps.hook)
      write_slot(ps.slot, ps.saved, p.relro_begin, p.relro_end);
  }
  p.live = false;
  p.seen = true;
  slot(m).state.store(static_cast<uint32_t>(proto::ModuleState::Restored),
                      std::memory_order_release);
  return 0;
}

int read_token(dl_phdr_info* info, size_t size, void* data) {
  if (size >= offsetof(dl_phdr_info, dlpi_subs) + sizeof(info->dlpi_subs))
    *static_cast<uint64_t*>(data) = info->dlpi_adds + info->dlpi_subs;
  return 1;
}

uint64_t objects_token() {
  uint64_t token = 0;
  dl_iterate_phdr(read_token, &token);
  return token;
}

// Entries not found by a walk: their object was dlclose'd.
void mark_unseen_unloaded() {
  for (uint32_t m = 0; m < g_count; ++m) {
    if (g_patches[m].live && !g_patches[m].seen) {
      g_patches[m].live = false;
      slot(m).state.store(static_cast<uint32_t>(proto::ModuleState::Unloaded),
                          std::memory_order_release);
    }
  }
}

template <typename Fn>
bool resolve_in(Fn* out, const char* name, uintptr_t interp_base) {
  void* p = dlsym(RTLD_DEFAULT, name);
  Dl_info info;
  // The interpreter's own function, not an interposer's.
  if (!p || !dladdr(p, &info) || reinterpret_cast<uintptr_t>(info.dli_fbase) != interp_base)
    return false;
  *out = reinterpret_cast<Fn>(p);
  return true;
}

}  // namespace

bool resolve_module_functions(const link_map* interp) {
  Dl_info self;
  if (dladdr(reinterpret_cast<void*>(&resolve_module_functions), &self))
    g_own_base = reinterpret_cast<uintptr_t>(self.dli_fbase);
  g_interp_dynamic = reinterpret_cast<uintptr_t>(interp->l_ld);
  // dli_fbase is where the object's first segment is mapped.
  Dl_info where;
  if (!dladdr(reinterpret_cast<void*>(dlsym(RTLD_DEFAULT, "Py_GetVersion")), &where)) return false;
  const auto base = reinterpret_cast<uintptr_t>(where.dli_fbase);
  return resolve_in(&real_save, "PyEval_SaveThread", base) &&
         resolve_in(&real_restore, "PyEval_RestoreThread", base) &&
         resolve_in(&real_ensure, "PyGILState_Ensure", base) &&
         resolve_in(&real_release, "PyGILState_Release", base);
}

void scan_modules() {
  if (!real_save || !g.header || !lock_waiting()) return;
  g_token.store(objects_token(), std::memory_order_relaxed);
  for (uint32_t m = 0; m < g_count; ++m) g_patches[m].seen = false;
  g_ncandidates = 0;
  g_more_candidates = false;
  g_scan_count.begin();
  dl_iterate_phdr(scan_one, nullptr);
  mark_unseen_unloaded();
  hook_candidates();
  g.header->modules_not_hooked.store(g_scan_count.left_out(g_count, proto::kMaxModules),
                                     std::memory_order_relaxed);
  // More new objects than one pass takes: the next check scans again.
  if (g_scan_count.rescan(g_more_candidates, g_count, proto::kMaxModules))
    g_token.store(~uint64_t{0}, std::memory_order_relaxed);
  unlock();
}

void note_objects_loaded() {
  if (!real_save || objects_token() == g_token.load(std::memory_order_relaxed)) return;
  scan_modules();
}

bool restore_modules() {
  if (!try_lock()) return false;
  if (g.header) {
    for (uint32_t m = 0; m < g_count; ++m) g_patches[m].seen = false;
    dl_iterate_phdr(restore_one, nullptr);
    mark_unseen_unloaded();
  }
  g_count = 0;
  g_token.store(~uint64_t{0}, std::memory_order_relaxed);
  unlock();
  return true;
}

void clear_module_table() {
  proto::Header* h = g.header;
  h->module_count.store(0, std::memory_order_release);
  h->modules_not_hooked.store(0, std::memory_order_relaxed);
  for (proto::ModuleSlot& s : h->modules) {
    if (s.state.load(std::memory_order_relaxed) == 0) break;
    s.state.store(0, std::memory_order_relaxed);
    s.hooked_slots = 0;
    s.base = 0;
    for (auto* c : {&s.releases, &s.released, &s.restores, &s.restore_wait, &s.ensures,
                    &s.ensure_wait, &s.gil_releases, &s.callback_held})
      c->store(0, std::memory_order_relaxed);
    std::memset(s.name, 0, sizeof(s.name));
  }
}

}  // namespace gilstat::probe

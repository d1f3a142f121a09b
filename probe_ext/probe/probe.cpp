// Probe lifecycle: find the interpreter, map the shared region, install the
// hooks, arm, stop.  Nothing here runs on the hook path.
//
// Under `gilstat run` the probe is LD_PRELOADed into every process of the
// exec chain (pyenv's bash shims first), so the constructor must stay inert
// in anything that is not CPython and in every CPython process but the first
// one that claims the region.
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "got_patch.hpp"
#include "probe_state.hpp"

namespace gilstat::probe {
namespace {

GotPatcher g_patcher;

void set_detail(const char* text) {
  std::snprintf(g.header->status_detail, sizeof(g.header->status_detail), "%s", text);
}

void set_status(proto::Status s) {
  g.header->status.store(static_cast<uint32_t>(s), std::memory_order_release);
}

// PY_VERSION_HEX of the running interpreter, from Py_Version (3.11+) or by
// parsing Py_GetVersion() ("3.10.13 (main, ...").  Never from file names.
bool read_version(uint32_t* hex, char* text, size_t text_len) {
  using GetVersionFn = const char* (*)();
  auto get_version = reinterpret_cast<GetVersionFn>(dlsym(RTLD_DEFAULT, "Py_GetVersion"));
  if (!get_version) return false;
  const char* v = get_version();
  size_t n = 0;
  while (v[n] && v[n] != ' ' && n + 1 < text_len) {
    text[n] = v[n];
    ++n;
  }
  text[n] = '\0';
  if (auto* py_version = static_cast<const uint32_t*>(dlsym(RTLD_DEFAULT, "Py_Version"))) {
    *hex = *py_version;
    return true;
  }
  unsigned major = 0, minor = 0, micro = 0;
  if (std::sscanf(text, "%u.%u.%u", &major, &minor, &micro) < 2) return false;
  *hex = (major << 24) | (minor << 16) | (micro << 8);
  return true;
}

bool build_locator(uintptr_t runtime, int minor, GilLocator* loc) {
  loc->minor = minor;
  loc->runtime = runtime;
  loc->tstate_thread_id = cpython::tstate_thread_id_offset(minor);
  if (const uint32_t off = cpython::runtime_gil_offset(minor)) {
    if (off + cpython::kGilDefault.size > loc->runtime_size) return false;
    loc->fixed_gil = runtime + off;
    return true;
  }
  if (minor == 12) {
    if (cpython::kInterp312.interpreters_main + 8 > loc->runtime_size) return false;
    loc->interpreters_main = runtime + cpython::kInterp312.interpreters_main;
    loc->ceval_gil = cpython::kInterp312.ceval_gil;
    loc->own_gil_storage = cpython::kInterp312.own_gil_storage;
    loc->interpreters_head = runtime + cpython::kInterp312.interpreters_head;
    loc->interp_next = cpython::kInterp312.interp_next;
    loc->interp_id = cpython::kInterp312.interp_id;
    return true;
  }
  cpython::DebugOffsetsLayout layout{};
  if (!cpython::debug_offsets_layout(minor, &layout)) return false;
  const char* base = reinterpret_cast<const char*>(runtime);
  if (loc->runtime_size < layout.struct_size) return false;
  if (std::memcmp(base, cpython::kDebugCookie, sizeof(cpython::kDebugCookie)) != 0) return false;
  auto u64 = [&](uint32_t at) {
    uint64_t v;
    std::memcpy(&v, base + at, sizeof(v));
    return v;
  };
  // Every value is checked before it becomes an address: a wrong one means
  // "not armed" with a status, never a fault in the target.
  const cpython::DebugOffsetsCheck check = cpython::check_debug_offsets(minor, layout, u64);
  if (!check.ok || check.runtime_size > loc->runtime_size) return false;
  loc->free_threaded = u64(cpython::kDebugFreeThreadedAt) != 0;
  loc->interpreters_main = runtime + u64(layout.interpreters_head) + cpython::kMainAfterHead;
  loc->ceval_gil = static_cast<uint32_t>(u64(layout.interp_ceval_gil));
  loc->own_gil_storage = static_cast<uint32_t>(u64(layout.interp_gil_state));
  loc->tstate_thread_id = static_cast<uint32_t>(u64(layout.tstate_thread_id));
  loc->interpreters_head = runtime + u64(layout.interpreters_head);
  loc->interp_next = static_cast<uint32_t>(u64(layout.interp_next));
  loc->interp_id = static_cast<uint32_t>(u64(layout.interp_id));
  return true;
}

void on_fork_child() {
  // The child of a fork is not measured: stop recording and give it back its
  // original GOT (only this thread exists now, so nobody is inside a hook).
  g.recording.store(0);
  g.want_arm.store(0);
  g_patcher.reset_lock_after_fork();
  g_patcher.restore();
  // Extension modules' slots stay hooked: with recording off those hooks
  // only call through, and walking the loaded objects here could block on
  // a loader lock a thread of the parent held at the fork.
  g.restore_pending.store(0);
  g.header = nullptr;
}

void adopt_region(proto::Header* h) {
  g.ring_count = h->ring_count;
  g.ring_capacity = h->ring_capacity;
  g.ring_stride = h->ring_stride;
  g.rings = reinterpret_cast<char*>(h) + h->rings_offset;
  g.clock_tsc = h->clock_kind == proto::ClockKind::Tsc;
  g.header = h;
}

bool map_region(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
      st.st_size < static_cast<off_t>(sizeof(proto::Header)) ||
      static_cast<uint64_t>(st.st_size) > proto::kMaxRegionBytes)
    return false;
  // Sealed at its size by the CLI: nobody can truncate it under the hooks.
  if (fcntl(fd, F_GET_SEALS) != proto::kRegionSeals) return false;
  void* p = mmap(nullptr, st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return false;
  auto* h = static_cast<proto::Header*>(p);
  const proto::Layout l{h->ring_count,   h->ring_capacity, h->name_slots,
                        h->names_offset, h->rings_offset,  h->total_size};
  const bool ok = h->magic == proto::kMagic && h->version == proto::kProtocolVersion &&
                  !proto::layout_problem(l, h->ring_stride, static_cast<uint64_t>(st.st_size));
  if (!ok) {
    munmap(p, st.st_size);
    return false;
  }
  // Only the first CPython process of this run arms; later ones (children,
  // re-execs) see the claim and stay inert.
  int32_t expected = 0;
  if (!h->claim_pid.compare_exchange_strong(expected, static_cast<int32_t>(getpid()))) {
    munmap(p, st.st_size);
    return false;
  }
  adopt_region(h);
  return true;
}

// One-time facts about this process: version, where the GIL lives, the real
// pthread functions.  Returns false (with status and detail set) when the
// process cannot be measured.
link_map* g_interp_map = nullptr;
bool g_module_hooks = false;

bool discover() {
  if (g_interp_map) return true;
  proto::Header* h = g.header;
  if (!read_version(&h->py_version_hex, h->py_version, sizeof(h->py_version))) {
    set_detail("could not read the interpreter version");
    set_status(proto::Status::UnsupportedVersion);
    return false;
  }
  const int major = (h->py_version_hex >> 24) & 0xff;
  const int minor = (h->py_version_hex >> 16) & 0xff;
  if (!cpython::minor_supported(major, minor)) {
    char text[160];
    std::snprintf(text, sizeof(text), "CPython %s is not supported (gilstat supports 3.%d to 3.%d)",
                  h->py_version, cpython::kMinMinor, cpython::kMaxMinor);
    set_detail(text);
    set_status(proto::Status::UnsupportedVersion);
    return false;
  }
  void* runtime = dlsym(RTLD_DEFAULT, "_PyRuntime");
  Dl_info info;
  link_map* map = nullptr;
  ElfW(Sym)* sym = nullptr;
  if (!runtime || !dladdr1(runtime, &info, reinterpret_cast<void**>(&map), RTLD_DL_LINKMAP) ||
      !map || !dladdr1(runtime, &info, reinterpret_cast<void**>(&sym), RTLD_DL_SYMENT) || !sym ||
      info.dli_saddr != runtime) {
    set_detail("_PyRuntime not found in the interpreter");
    set_status(proto::Status::NoGilFound);
    return false;
  }
  g.locator.runtime_size = sym->st_size;
  if (!build_locator(reinterpret_cast<uintptr_t>(runtime), minor, &g.locator)) {
    set_detail("no GIL layout for this build (_Py_DebugOffsets did not validate)");
    set_status(proto::Status::NoGilFound);
    return false;
  }
  g.fields = cpython::gil_fields(g.locator.free_threaded);

  if (!resolve_real_functions()) {
    set_detail("could not resolve the real pthread functions");
    set_status(proto::Status::HookFailed);
    return false;
  }
  pthread_atfork(nullptr, nullptr, on_fork_child);
  init_thread_naming(map);
  // Without them the module table stays empty; the GIL is measured anyway.
  // GILSTAT_NO_MODULE_HOOKS (bench/module_hooks.py) leaves them out, to
  // measure what they cost.
  g_module_hooks = !getenv("GILSTAT_NO_MODULE_HOOKS") && resolve_module_functions(map);
  g_interp_map = map;
  return true;
}

// Facts that live in the header are written again for every new region.
void describe_process() {
  proto::Header* h = g.header;
  uint32_t hex = 0;
  read_version(&hex, h->py_version, sizeof(h->py_version));
  h->py_version_hex = hex;
  h->free_threaded = g.locator.free_threaded;
  const bool shared = g_interp_map->l_name && g_interp_map->l_name[0];
  h->libpython_shared = shared;
  if (shared) {
    std::snprintf(h->interp_object, sizeof(h->interp_object), "%s", g_interp_map->l_name);
  } else {
    const ssize_t n = readlink("/proc/self/exe", h->interp_object, sizeof(h->interp_object) - 1);
    h->interp_object[n > 0 ? n : 0] = '\0';
  }
}

bool install_and_arm() {
  const HookSpec* specs;
  size_t n;
  hooks_table(&specs, &n);
  // A restore in progress (a stop deferred from inside a hook) finishes
  // within milliseconds; not getting the lock in 2 s means something is wrong.
  int waited_ms = 0;
  while (!g_patcher.try_lock()) {
    if (++waited_ms > 2000) {
      set_detail("the GOT is being restored by another thread");
      set_status(proto::Status::HookFailed);
      return false;
    }
    struct timespec ts{0, 1000000};
    nanosleep(&ts, nullptr);
  }
  const int patched = g_patcher.patch(g_interp_map, specs, n);
  g_patcher.unlock();
  if (patched <= 0 && g_patcher.patched() == 0) {
    set_detail("no pthread GOT slot found in the interpreter object");
    set_status(proto::Status::HookFailed);
    return false;
  }
  g.header->hooks_installed.store(static_cast<uint32_t>(g_patcher.patched()));
  set_status(proto::Status::HooksInstalled);
  g.want_arm.store(1, std::memory_order_release);
  if (try_arm()) register_existing_gils();
  if (g_module_hooks) scan_modules();
  start_probe_thread();
  return true;
}

__attribute__((constructor)) void probe_constructor() {
  const char* fd_text = getenv(proto::kEnvShmFd);
  if (!fd_text) return;
  // Not CPython (a bash shim, env, a launcher): do nothing at all.
  if (!dlsym(RTLD_DEFAULT, "Py_GetVersion")) return;
  char* end = nullptr;
  const long fd = std::strtol(fd_text, &end, 10);
  if (end == fd_text || *end || fd < 0) return;
  if (!map_region(static_cast<int>(fd))) return;
  if (!discover()) return;
  describe_process();
  install_and_arm();
}

}  // namespace
}  // namespace gilstat::probe

namespace gilstat::probe {
namespace {

int g_region_fd = -1;  // the region this probe created after an attach

// Creates the region an attached CLI takes with pidfd_getfd.  It
// lives as long as the process: a later attach reuses it, so threads' ring
// pointers stay valid and nothing is ever unmapped under a running hook.
int create_own_region(proto::ClockKind clock) {
  const proto::Layout layout = proto::make_layout(
      proto::kDefaultRings, proto::kDefaultRingCapacity, proto::kDefaultNameSlots);
  const int fd = memfd_create("gilstat", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return -errno;
  // memfd is born 0777; the GIL traffic of this process is nobody else's.
  // Sealed at its size: the CLI maps it only with these seals (the proof
  // that nothing in this process can truncate it under its mapping).
  if (fchmod(fd, 0600) != 0 || ftruncate(fd, static_cast<off_t>(layout.total_size)) != 0 ||
      fcntl(fd, F_ADD_SEALS, proto::kRegionSeals) != 0) {
    const int err = errno;
    close(fd);
    return -err;
  }
  void* p = mmap(nullptr, layout.total_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    const int err = errno;
    close(fd);
    return -err;
  }
  proto::Header* h = proto::init_header(p, layout, clock);
  h->claim_pid.store(static_cast<int32_t>(getpid()));
  adopt_region(h);
  g_region_fd = fd;
  return fd;
}

// A new consumer session on an existing region: whatever an earlier CLI left
// unread is discarded, rings of exited threads are freed, and the GIL table
// is published afresh by arming again.
void reset_session() {
  proto::Header* h = g.header;
  // Rings never claimed have nothing to discard (and their pages stay untouched).
  const uint32_t ring_count = claimed_ring_count();
  for (uint32_t i = 0; i < ring_count; ++i) {
    auto* r = reinterpret_cast<proto::RingControl*>(g.rings + g.ring_stride * i);
    r->tail.store(r->head.load(std::memory_order_acquire), std::memory_order_release);
    r->dropped.store(0, std::memory_order_relaxed);
    uint32_t closed = static_cast<uint32_t>(proto::RingState::Closed);
    r->state.compare_exchange_strong(closed, static_cast<uint32_t>(proto::RingState::Free));
  }
  h->drops_no_ring.store(0);
  h->stop_request.store(0);
  h->hooks_restored.store(0);
  h->gil_count.store(0);
  g.gil_count.store(0, std::memory_order_release);
  g.gils_allocated.store(0);
  h->session.fetch_add(1);
  g.session.fetch_add(1, std::memory_order_release);
  // The new CLI reads the name log from here on: publish every name again.
  h->name_start.store(h->name_head.load());
  forget_published_names();
  clear_module_table();
}

bool config_flag(const char* config, const char* key) {
  return config && std::strstr(config, key) != nullptr;
}

}  // namespace
}  // namespace gilstat::probe

extern "C" {

// Starts (or restarts) the probe after an injection or from Python.  Only
// starts a thread and patches GOT slots; runs no Python code.
// config: ';'-separated words: "tsc" (use the TSC clock), "heartbeat" (unhook
// when the CLI's heartbeat stops).  Returns the region's fd (>= 0) for the
// CLI to take, or -errno / proto::start_failure(Status) on failure;
// -EBUSY when another live gilstat is attached.
__attribute__((visibility("default"))) int64_t gilstat_probe_start(const char* config) {
  using namespace gilstat::probe;
  namespace proto = gilstat::proto;
  if (g.header && g_region_fd < 0) return -EBUSY;  // under `gilstat run`, owned by that run
  if (g.header && g.recording.load() && probe_consumer_alive()) return -EBUSY;
  if (!g.header) {
    const int fd = create_own_region(config_flag(config, "tsc") ? proto::ClockKind::Tsc
                                                                 : proto::ClockKind::Monotonic);
    if (fd < 0) return fd;
  } else {
    // A previous CLI is gone (or never stopped us): take over.
    g.recording.store(0);
    reset_session();
  }
  g.header->heartbeat_watch = config_flag(config, "heartbeat") ? 1 : 0;
  g.header->heartbeat.store(0);
  const auto status = [] { return static_cast<proto::Status>(g.header->status.load()); };
  if (!discover()) return proto::start_failure(status());
  describe_process();
  if (!install_and_arm()) return proto::start_failure(status());
  return g_region_fd;
}

// Stops recording and restores every patched GOT slot (or, when another
// thread holds the patcher, leaves the restore to the probe thread and
// returns 0).  The library stays loaded: a thread may still be inside a
// hook, blocked in the real pthread_cond_timedwait.
__attribute__((visibility("default"))) int gilstat_probe_stop() {
  using namespace gilstat::probe;
  g.recording.store(0);
  g.want_arm.store(0);
  if (!g_patcher.try_lock()) {
    // Another thread is patching or restoring: the probe thread finishes
    // the restore at its next tick.
    g.restore_pending.store(1);
    return 0;
  }
  const int restored = g_patcher.restore();
  g_patcher.unlock();
  // Objects dlclose'd since they were hooked are skipped, never written.
  g.restore_pending.store(restore_modules() ? 0 : 1);
  if (g.header) {
    // A retried stop (deferred module restore) has no interpreter slots left.
    if (restored > 0) g.header->hooks_restored.store(static_cast<uint32_t>(restored));
    g.header->status.store(static_cast<uint32_t>(gilstat::proto::Status::Stopped));
  }
  return restored;
}

}

extern "C" {

// One line describing the probe in this process, for the Python module and
// for tests: "status=<n> python=<version> hooks=<patched> gils=<count>".
// Returns the length written (snprintf semantics).
__attribute__((visibility("default"))) int gilstat_probe_status(char* buf, size_t len) {
  using namespace gilstat::probe;
  if (!g.header) return std::snprintf(buf, len, "status=inactive");
  const auto* h = g.header;
  return std::snprintf(buf, len, "status=%u python=%s hooks=%u gils=%u recording=%d",
                       h->status.load(), h->py_version, h->hooks_installed.load(),
                       g.gil_count.load(), g.recording.load());
}

}

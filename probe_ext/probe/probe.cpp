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
#include <unistd.h>

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
  if (const uint32_t off = cpython::runtime_gil_offset(minor)) {
    loc->fixed_gil = runtime + off;
    return true;
  }
  if (minor == 12) {
    loc->interpreters_main = runtime + cpython::kInterp312.interpreters_main;
    loc->ceval_gil = cpython::kInterp312.ceval_gil;
    loc->own_gil_storage = cpython::kInterp312.own_gil_storage;
    return true;
  }
  cpython::DebugOffsetsLayout layout{};
  if (!cpython::debug_offsets_layout(minor, &layout)) return false;
  const char* base = reinterpret_cast<const char*>(runtime);
  if (std::memcmp(base, cpython::kDebugCookie, sizeof(cpython::kDebugCookie)) != 0) return false;
  auto u64 = [&](uint32_t at) {
    uint64_t v;
    std::memcpy(&v, base + at, sizeof(v));
    return v;
  };
  loc->free_threaded = u64(cpython::kDebugFreeThreadedAt) != 0;
  loc->interpreters_main = runtime + u64(layout.interpreters_head) + cpython::kMainAfterHead;
  loc->ceval_gil = static_cast<uint32_t>(u64(layout.interp_ceval_gil));
  loc->own_gil_storage = static_cast<uint32_t>(u64(layout.interp_gil_state));
  return true;
}

void on_fork_child() {
  // The child of a fork is not measured: stop recording and give it back its
  // original GOT (only this thread exists now, so nobody is inside a hook).
  g.recording.store(0);
  g.want_arm.store(0);
  g_patcher.restore();
  g.header = nullptr;
}

bool map_region(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size < static_cast<off_t>(sizeof(proto::Header))) return false;
  void* p = mmap(nullptr, st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return false;
  auto* h = static_cast<proto::Header*>(p);
  const auto& l = *h;
  const bool ok = l.magic == proto::kMagic && l.version == proto::kProtocolVersion &&
                  l.ring_count <= proto::kMaxRings && l.ring_capacity && (l.ring_capacity & (l.ring_capacity - 1)) == 0 &&
                  l.ring_stride == proto::ring_stride(l.ring_capacity) &&
                  l.rings_offset + uint64_t{l.ring_stride} * l.ring_count <= uint64_t(st.st_size);
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
  g.header = h;
  g.ring_count = h->ring_count;
  g.ring_capacity = h->ring_capacity;
  g.ring_stride = h->ring_stride;
  g.rings = static_cast<char*>(p) + h->rings_offset;
  g.clock_tsc = h->clock_kind == proto::ClockKind::Tsc;
  return true;
}

// Everything after the region is mapped and claimed.
void start_in_process() {
  proto::Header* h = g.header;
  if (!read_version(&h->py_version_hex, h->py_version, sizeof(h->py_version))) {
    set_detail("could not read the interpreter version");
    set_status(proto::Status::UnsupportedVersion);
    return;
  }
  const int major = (h->py_version_hex >> 24) & 0xff;
  const int minor = (h->py_version_hex >> 16) & 0xff;
  if (!cpython::minor_supported(major, minor)) {
    char text[160];
    std::snprintf(text, sizeof(text), "CPython %s is not supported (gilstat supports 3.%d to 3.%d)",
                  h->py_version, cpython::kMinMinor, cpython::kMaxMinor);
    set_detail(text);
    set_status(proto::Status::UnsupportedVersion);
    return;
  }
  void* runtime = dlsym(RTLD_DEFAULT, "_PyRuntime");
  Dl_info info;
  link_map* map = nullptr;
  if (!runtime || !dladdr1(runtime, &info, reinterpret_cast<void**>(&map), RTLD_DL_LINKMAP) ||
      !map) {
    set_detail("_PyRuntime not found in the interpreter");
    set_status(proto::Status::NoGilFound);
    return;
  }
  const bool shared = map->l_name && map->l_name[0];
  h->libpython_shared = shared;
  if (shared) {
    std::snprintf(h->interp_object, sizeof(h->interp_object), "%s", map->l_name);
  } else {
    const ssize_t n = readlink("/proc/self/exe", h->interp_object, sizeof(h->interp_object) - 1);
    h->interp_object[n > 0 ? n : 0] = '\0';
  }
  if (!build_locator(reinterpret_cast<uintptr_t>(runtime), minor, &g.locator)) {
    set_detail("no GIL layout for this build (_Py_DebugOffsets did not validate)");
    set_status(proto::Status::NoGilFound);
    return;
  }
  h->free_threaded = g.locator.free_threaded;
  g.fields = cpython::gil_fields(g.locator.free_threaded);

  if (!resolve_real_functions()) {
    set_detail("could not resolve the real pthread functions");
    set_status(proto::Status::HookFailed);
    return;
  }
  pthread_key_create(&g.exit_key, on_thread_exit);
  pthread_atfork(nullptr, nullptr, on_fork_child);

  const HookSpec* specs;
  size_t n;
  hooks_table(&specs, &n);
  const int patched = g_patcher.patch(map, specs, n);
  if (patched <= 0) {
    set_detail("no pthread GOT slot found in the interpreter object");
    set_status(proto::Status::HookFailed);
    return;
  }
  h->hooks_installed.store(static_cast<uint32_t>(patched));
  set_status(proto::Status::HooksInstalled);
  g.want_arm.store(1, std::memory_order_release);
  try_arm();
  start_probe_thread();
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
  start_in_process();
}

}  // namespace
}  // namespace gilstat::probe

extern "C" {

// Stops recording and restores every patched GOT slot.  The library stays
// loaded: a thread may still be inside a hook, blocked in the real
// pthread_cond_timedwait.
__attribute__((visibility("default"))) int gilstat_probe_stop() {
  using namespace gilstat::probe;
  g.recording.store(0);
  g.want_arm.store(0);
  const int restored = g_patcher.restore();
  if (g.header) {
    g.header->hooks_restored.store(static_cast<uint32_t>(restored));
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

// The probe's own thread.  It watches the CLI (stop requests, heartbeat)
// and reads the names of threads that thread start did not name
// (thread_names.cpp): those that existed before the probe armed, and
// renames.  It takes the GIL for that (PyGILState_Ensure), briefly and
// rarely; those acquisitions are tagged as the probe's own and still
// counted, so the switch_number cross-check stays exact.
//
// It never imports anything: a program that has not imported `threading`
// has no names to read, and importing it from a foreign thread would change
// which thread `threading` believes is the main one.
#include <dlfcn.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include <cstring>

#include "probe_state.hpp"

extern "C" int gilstat_probe_stop();

namespace gilstat::probe {
namespace {

struct PyObject;
using Obj = PyObject*;

// The few C API functions used, found with dlsym: the probe links no CPython
// symbol (it is preloaded into bash shims too, where such a link is fatal).
struct PyApi {
  int (*is_initialized)();
  int (*is_finalizing)();
  int (*gil_ensure)();
  void (*gil_release)(int);
  Obj (*get_module_dict)();
  Obj (*dict_get_item_string)(Obj, const char*);
  Obj (*get_attr_string)(Obj, const char*);
  Obj (*dict_items)(Obj);
  long (*list_size)(Obj);
  Obj (*list_get_item)(Obj, long);
  Obj (*tuple_get_item)(Obj, long);
  long (*long_as_long)(Obj);
  const char* (*unicode_as_utf8)(Obj);
  void (*err_clear)();
  void (*dec_ref)(Obj);
};

template <typename Fn>
bool load(Fn* out, const char* name) {
  *out = reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, name));
  return *out != nullptr;
}

bool load_api(PyApi* api) {
  bool ok = load(&api->is_initialized, "Py_IsInitialized");
  // 3.13 made it public; older versions only have the underscore name.
  if (!load(&api->is_finalizing, "Py_IsFinalizing")) ok &= load(&api->is_finalizing, "_Py_IsFinalizing");
  ok &= load(&api->gil_ensure, "PyGILState_Ensure");
  ok &= load(&api->gil_release, "PyGILState_Release");
  ok &= load(&api->get_module_dict, "PyImport_GetModuleDict");
  ok &= load(&api->dict_get_item_string, "PyDict_GetItemString");
  ok &= load(&api->get_attr_string, "PyObject_GetAttrString");
  ok &= load(&api->dict_items, "PyDict_Items");
  ok &= load(&api->list_size, "PyList_Size");
  ok &= load(&api->list_get_item, "PyList_GetItem");
  ok &= load(&api->tuple_get_item, "PyTuple_GetItem");
  ok &= load(&api->long_as_long, "PyLong_AsLong");
  ok &= load(&api->unicode_as_utf8, "PyUnicode_AsUTF8");
  ok &= load(&api->err_clear, "PyErr_Clear");
  ok &= load(&api->dec_ref, "Py_DecRef");
  return ok;
}

struct Named {
  uint32_t tid;
  char name[proto::kNameLen];
};
constexpr int kMaxNamed = 256;

// Under the GIL: snapshot threading._active into `out`.  Reads the private
// instance attributes _name/_native_id (present 3.8–3.15) because the public
// properties would run Python code, which may switch threads mid-walk.
int read_names(const PyApi& py, Named* out) {
  int n = 0;
  Obj threading = py.dict_get_item_string(py.get_module_dict(), "threading");  // borrowed
  if (!threading) return 0;
  Obj active = py.get_attr_string(threading, "_active");
  if (!active) {
    py.err_clear();
    return 0;
  }
  Obj items = py.dict_items(active);  // a copy: safe against concurrent changes
  py.dec_ref(active);
  if (!items) {
    py.err_clear();
    return 0;
  }
  const long count = py.list_size(items);
  for (long i = 0; i < count && n < kMaxNamed; ++i) {
    Obj thread = py.tuple_get_item(py.list_get_item(items, i), 1);
    if (!thread) break;
    Obj native_id = py.get_attr_string(thread, "_native_id");
    Obj name = py.get_attr_string(thread, "_name");
    if (native_id && name) {
      const long tid = py.long_as_long(native_id);
      const char* text = py.unicode_as_utf8(name);
      if (tid > 0 && text) {
        out[n].tid = static_cast<uint32_t>(tid);
        std::strncpy(out[n].name, text, proto::kNameLen - 1);
        out[n].name[proto::kNameLen - 1] = '\0';
        ++n;
      }
    }
    if (native_id) py.dec_ref(native_id);
    if (name) py.dec_ref(name);
    py.err_clear();
  }
  py.dec_ref(items);
  return n;
}

// Per ring (probe-private): how many name reads have failed to name the
// thread that owns it.  Native threads never get a Python name, so a ring
// stops asking for reads after a few tries.
struct NameTries {
  uint32_t generation;
  uint8_t tries;
};

// Counts the application threads that still want a name read; with
// `after_read`, also charges them one failed try.
uint32_t threads_wanting_names(NameTries* tries, bool after_read) {
  uint32_t wanting = 0;
  const uint32_t ring_count = claimed_ring_count();
  for (uint32_t i = 0; i < ring_count; ++i) {
    auto* r = reinterpret_cast<proto::RingControl*>(g.rings + g.ring_stride * i);
    if (r->state.load(std::memory_order_acquire) != static_cast<uint32_t>(proto::RingState::Active))
      continue;
    if (r->flags & proto::kRingOwnThread) continue;
    if (tries[i].generation != r->generation) tries[i] = {r->generation, 0};
    if (tries[i].tries >= 3 || cached_name_hash(r->tid)) continue;
    if (after_read) tries[i].tries += 1;
    ++wanting;
  }
  return wanting;
}

std::atomic<uint64_t> g_beat_seen_ns{0};  // when the heartbeat last moved

uint64_t now_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + ts.tv_nsec;
}

constexpr uint64_t kHeartbeatTimeoutNs = 1000000000ull;
// A CLI beat time later than ours by more than this, or older than
// kClockTrustNs, is on another clock (a time namespace): not used.
constexpr uint64_t kClockSlackNs = 50000000ull;
constexpr uint64_t kClockTrustNs = 10000000000ull;

// Stop requested by the CLI, or (attach) its heartbeat stopped moving: a
// SIGKILLed gilstat must not leave the target hooked.
bool should_stop(uint64_t* last_beat) {
  proto::Header* h = g.header;
  if (h->stop_request.load(std::memory_order_acquire)) return true;
  if (!h->heartbeat_watch) return false;
  const uint64_t beat = h->heartbeat.load(std::memory_order_acquire);
  const uint64_t now = now_ns();
  if (beat != *last_beat) {
    *last_beat = beat;
    // When the CLI beat, by its own clock: the same CLOCK_MONOTONIC unless
    // it runs in another time namespace, which a beat "from the future" or
    // from long ago gives away (then: when we saw it).  This thread may
    // have been blocked for a while (PyGILState_Ensure behind busy threads):
    // the time it saw the beat can be long after the beat itself.
    const uint64_t at = h->heartbeat_ns.load(std::memory_order_relaxed);
    const uint64_t age = at > now ? 0 : now - at;
    const bool same_clock = at != 0 && at <= now + kClockSlackNs && age < kClockTrustNs;
    g_beat_seen_ns.store(same_clock ? now - age : now);
  }
  return now - g_beat_seen_ns.load() > kHeartbeatTimeoutNs;
}

// The probe thread's view of the heartbeat counter (only that thread uses it:
// in its loop, or inside its own GIL wait via own_thread_wait_tick).
uint64_t g_last_beat = 0;

pthread_mutex_t g_thread_mutex = PTHREAD_MUTEX_INITIALIZER;
bool g_thread_running = false;

bool keep_running() {
  pthread_mutex_lock(&g_thread_mutex);
  const bool keep =
      g.header && g.recording.load() + g.want_arm.load() + g.restore_pending.load() > 0;
  if (!keep) g_thread_running = false;
  pthread_mutex_unlock(&g_thread_mutex);
  return keep;
}

void* probe_thread_main(void*) {
  mark_current_thread_own();
  confirm_tid_offset();
  PyApi py{};
  const bool api = load_api(&py);
  Named named[kMaxNamed];
  // 20 ms ticks, 2 ms while more than a quarter of the rings are taken: a
  // service that starts threads by the thousand per second needs the rings
  // of ended threads back soon (the CLI frees them at its next drain).
  constexpr long kTickNs = 20000000L, kBusyTickNs = 2000000L;
  constexpr uint64_t kRenameCheckNs = 2000000000ull;
  long tick_ns = kTickNs;
  uint64_t last_read_ns = now_ns();
  static NameTries tries[proto::kMaxRings];  // ring_count <= kMaxRings (map_region)
  g_last_beat = g.header->heartbeat.load();
  g_beat_seen_ns.store(now_ns());
  while (keep_running()) {
    struct timespec ts{0, tick_ns};
    nanosleep(&ts, nullptr);
    if (should_stop(&g_last_beat) || g.restore_pending.load()) {
      gilstat_probe_stop();
      continue;  // keep_running() now says no, unless the restore was deferred
    }
    // Free-threaded builds may never take a GIL, so no hook ever arms: arm
    // from here once the interpreter has created it.
    if (g.want_arm.load() && try_arm()) register_existing_gils();
    sample_gil_enabled();
    // Objects loaded without CPython's import (ctypes, other libraries).
    if (g.recording.load()) note_objects_loaded();
    uint32_t in_use = 0;
    close_exited_rings(&in_use);
    tick_ns = in_use > g.ring_count / 4 ? kBusyTickNs : kTickNs;
    if (!api || !py.is_initialized() || py.is_finalizing()) continue;
    // Read right after a thread nobody named shows up, else every 2 s (renames).
    const uint64_t now = now_ns();
    if (threads_wanting_names(tries, false) == 0 && now - last_read_ns < kRenameCheckNs) continue;
    last_read_ns = now;
    const int state = py.gil_ensure();
    const int n = read_names(py, named);
    py.gil_release(state);
    for (int i = 0; i < n; ++i)
      publish_name(named[i].tid, named[i].name, strnlen(named[i].name, proto::kNameLen),
                   proto::NameSource::Poll);
    threads_wanting_names(tries, true);
  }
  return nullptr;
}

}  // namespace

// A free-threaded build runs without its GIL until something enables it
// (PYTHON_GIL=1, or importing an extension not marked free-threading-safe).
void sample_gil_enabled() {
  if (g.gil_count.load(std::memory_order_acquire) == 0) return;
  proto::Header* h = g.header;
  bool enabled = true;
  if (g.locator.free_threaded)
    enabled = __atomic_load_n(reinterpret_cast<const int32_t*>(g.gils[0].base + g.fields.enabled),
                              __ATOMIC_RELAXED) != 0;
  (enabled ? h->gil_enabled_seen : h->gil_disabled_seen).store(1, std::memory_order_relaxed);
  h->gil_enabled_now.store(enabled ? 1 : 0, std::memory_order_relaxed);
  // Changes that take no GIL lock (transient -> for good) show up here.
  // Only the main GIL: it lives in _PyRuntime, while a subinterpreter's
  // may be freed under us.
  if (g.locator.free_threaded && g.recording.load(std::memory_order_acquire)) note_gil_enabled(0);
}

void own_thread_wait_tick() {
  // Only while hooked: after a stop the GOT no longer leads here anyway,
  // except for the wait that is returning right now.
  if (!g.header || !g.recording.load(std::memory_order_acquire)) return;
  if (should_stop(&g_last_beat)) {
    gilstat_probe_stop();
    return;
  }
  // Waiting for the GIL behind busy threads can take long; rings of exited
  // threads must still come free meanwhile (a service starts threads by the
  // hundred).  This is the probe's own thread, not a thread of the program.
  uint32_t in_use = 0;
  close_exited_rings(&in_use);
}

bool probe_consumer_alive() {
  return g.header && g.header->heartbeat_watch && now_ns() - g_beat_seen_ns.load() < kHeartbeatTimeoutNs;
}

void start_probe_thread() {
  pthread_mutex_lock(&g_thread_mutex);
  if (!g_thread_running) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t thread;
    g_thread_running = pthread_create(&thread, &attr, probe_thread_main, nullptr) == 0;
    pthread_attr_destroy(&attr);
  }
  pthread_mutex_unlock(&g_thread_mutex);
}

}  // namespace gilstat::probe

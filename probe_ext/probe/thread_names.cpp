// Thread names.  The OS name of a Python thread is just "python3" (3.8–3.13),
// so Python's `threading` module is the only source, and two writers append
// what they learn to the region's name log (protocol.hpp, NameSlot):
//
// - The thread that starts a Python thread.  `threading.Thread.start()`
//   reaches pthread_create through the interpreter object's GOT with the GIL
//   held (_thread.start_new_thread / start_joinable_thread); our hook lets
//   the real call run, then reads the new Thread object's `_name` and the new
//   thread's kernel tid.  The new thread cannot run Python code before that
//   (it needs the GIL we hold), so a thread that lives 3 ms is named before
//   its first GIL event.  Nothing of the program is replaced: no profiler,
//   tracer or audit hook, only the GOT slot that stop() restores.
// - The probe thread (probe_thread.cpp), under the GIL, from
//   threading._active: threads that existed before the probe armed, renames.
//
// Not the hook path of the GIL: thread creation costs tens of microseconds,
// so a few syscalls (process_vm_readv) and C API calls with the GIL held
// are fine here.  Every pointer taken from the start routine's argument is
// read with process_vm_readv on ourselves, so a wrong guess about its layout
// is an error code, never a crash.
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>

#include <cstring>

#include "probe_state.hpp"

namespace gilstat::probe {
namespace {

struct PyObject;

// C API used by the thread-start path, found with dlsym at discovery (the
// probe links no CPython symbol).
struct StartApi {
  int (*gil_check)();
  PyObject* (*err_occurred)();
  void (*err_clear)();
  PyObject* (*method_self)(PyObject*);
  PyObject* (*object_type)(PyObject*);
  void* (*type_get_slot)(PyObject*, int);
  void* generic_getattr;  // PyObject_GenericGetAttr
  PyObject* (*get_attr_string)(PyObject*, const char*);
  const char* (*unicode_as_utf8)(PyObject*, ssize_t*);
  void (*inc_ref)(PyObject*);
  void (*dec_ref)(PyObject*);
  uintptr_t method_type;  // &PyMethod_Type
};
StartApi g_api{};
bool g_api_ok = false;

// The interpreter object's executable segments: pthread_create calls whose
// start routine lies there come from PyThread_start_*_thread.
constexpr int kMaxText = 4;
uintptr_t g_text_begin[kMaxText] = {}, g_text_end[kMaxText] = {};
int g_text_count = 0;

// Offset of the kernel tid inside glibc's struct pthread (what pthread_t
// points at), found by looking for gettid() there in two threads.
std::atomic<int> g_tid_offset{-1};
int g_tid_candidate = -1;
constexpr int kPthreadScanBytes = 1024;

__thread uint8_t t_naming __attribute__((tls_model("initial-exec")));

constexpr int kPyTpGetattro = 58;  // typeslots.h, the same in every version

template <typename Fn>
bool load(Fn* out, const char* name) {
  *out = reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, name));
  return *out != nullptr;
}

int find_text(dl_phdr_info* info, size_t, void* data) {
  if (info->dlpi_addr != static_cast<const link_map*>(data)->l_addr) return 0;
  for (int i = 0; i < info->dlpi_phnum && g_text_count < kMaxText; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X)) continue;
    g_text_begin[g_text_count] = info->dlpi_addr + ph.p_vaddr;
    g_text_end[g_text_count] = g_text_begin[g_text_count] + ph.p_memsz;
    ++g_text_count;
  }
  return 1;
}

bool in_interpreter_text(uintptr_t pc) {
  for (int i = 0; i < g_text_count; ++i)
    if (pc >= g_text_begin[i] && pc < g_text_end[i]) return true;
  return false;
}

// The offsets at which this thread's struct pthread holds its tid.
int tid_offset_in_self(int after) {
  char buf[kPthreadScanBytes];
  if (!safe_read(static_cast<uintptr_t>(pthread_self()), buf, sizeof(buf))) return -1;
  const auto tid = static_cast<int32_t>(syscall(SYS_gettid));
  for (int off = after + 4; off + 4 <= kPthreadScanBytes; off += 4) {
    int32_t v;
    std::memcpy(&v, buf + off, sizeof(v));
    if (v == tid) return off;
  }
  return -1;
}

// FNV-1a of a name, for the published-names cache.
uint32_t name_hash(const char* s, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<uint8_t>(s[i])) * 16777619u;
  return h | 1;  // never 0, which marks an empty cache entry
}

// What the log already says per tid (tid << 32 | hash), so the probe thread
// only asks Python for threads nobody named and only logs real renames.  A
// lossy cache: an entry may be overwritten by another tid, which only costs
// a repeated read.  Lock-free; any thread may update it.
constexpr uint32_t kCacheSize = 8192;
constexpr uint32_t kCacheProbes = 8;
std::atomic<uint64_t> g_cache[kCacheSize];

uint32_t cache_slot(uint32_t tid, uint32_t k) { return (tid * 2654435761u + k) & (kCacheSize - 1); }

void cache_store(uint32_t tid, uint32_t hash) {
  const uint64_t entry = uint64_t{tid} << 32 | hash;
  uint32_t victim = cache_slot(tid, 0);
  for (uint32_t k = 0; k < kCacheProbes; ++k) {
    const uint32_t s = cache_slot(tid, k);
    const uint64_t cur = g_cache[s].load(std::memory_order_relaxed);
    if (cur == 0 || cur >> 32 == tid) {
      victim = s;
      break;
    }
  }
  g_cache[victim].store(entry, std::memory_order_relaxed);
}

}  // namespace

bool safe_read(uintptr_t addr, void* out, size_t n) {
  iovec local{out, n};
  iovec remote{reinterpret_cast<void*>(addr), n};
  return addr && process_vm_readv(getpid(), &local, 1, &remote, 1, 0) == static_cast<ssize_t>(n);
}

uint32_t cached_name_hash(uint32_t tid) {
  for (uint32_t k = 0; k < kCacheProbes; ++k) {
    const uint64_t cur = g_cache[cache_slot(tid, k)].load(std::memory_order_relaxed);
    if (cur >> 32 == tid && cur != 0) return static_cast<uint32_t>(cur);
  }
  return 0;
}

void forget_published_names() {
  for (auto& e : g_cache) e.store(0, std::memory_order_relaxed);
}

void publish_name(uint32_t tid, const char* name, size_t len, proto::NameSource source) {
  proto::Header* h = g.header;
  if (!h || !tid || !len) return;
  if (len > proto::kNameLen - 1) len = proto::kNameLen - 1;
  const uint32_t hash = name_hash(name, len);
  if (cached_name_hash(tid) == hash) return;
  const uint32_t slots = h->name_slots;
  if (!slots || (slots & (slots - 1))) return;
  auto* log = reinterpret_cast<proto::NameSlot*>(reinterpret_cast<char*>(h) + h->names_offset);
  const uint64_t index = h->name_head.fetch_add(1, std::memory_order_relaxed);
  proto::NameSlot& slot = log[index & (slots - 1)];
  slot.seq.store(2 * index + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  slot.tid = tid;
  slot.source = static_cast<uint32_t>(source);
  slot.ts = now_raw_clock();
  std::memset(slot.name, 0, sizeof(slot.name));
  std::memcpy(slot.name, name, len);
  slot.seq.store(2 * index + 2, std::memory_order_release);
  cache_store(tid, hash);
}

void init_thread_naming(const link_map* interp) {
  g_text_count = 0;
  dl_iterate_phdr(find_text, const_cast<link_map*>(interp));
  StartApi a{};
  bool ok = load(&a.gil_check, "PyGILState_Check");
  ok &= load(&a.err_occurred, "PyErr_Occurred");
  ok &= load(&a.err_clear, "PyErr_Clear");
  ok &= load(&a.method_self, "PyMethod_Self");
  ok &= load(&a.object_type, "PyObject_Type");
  ok &= load(&a.type_get_slot, "PyType_GetSlot");
  ok &= load(&a.generic_getattr, "PyObject_GenericGetAttr");
  ok &= load(&a.get_attr_string, "PyObject_GetAttrString");
  ok &= load(&a.unicode_as_utf8, "PyUnicode_AsUTF8AndSize");
  ok &= load(&a.inc_ref, "Py_IncRef");
  ok &= load(&a.dec_ref, "Py_DecRef");
  void* method_type = dlsym(RTLD_DEFAULT, "PyMethod_Type");
  a.method_type = reinterpret_cast<uintptr_t>(method_type);
  g_api = a;
  g_api_ok = ok && method_type && g_text_count > 0;
  if (g_tid_offset.load() < 0) g_tid_candidate = tid_offset_in_self(-4);
}

int close_exited_rings(uint32_t* in_use) {
  const int tid_offset = g_tid_offset.load(std::memory_order_relaxed);
  *in_use = 0;
  if (!g.header || tid_offset < 0) return 0;
  // One process_vm_readv for all rings: each live ring's owner's tid as
  // glibc keeps it in struct pthread.  The kernel zeroes it when the thread
  // exits; a reused stack holds another tid; an unmapped one faults.
  constexpr uint32_t kBatch = 64;
  int closed = 0;
  const uint32_t ring_count = claimed_ring_count();
  for (uint32_t first = 0; first < ring_count; first += kBatch) {
    proto::RingControl* rings[kBatch];
    iovec remote[kBatch], local[kBatch];
    int32_t tids[kBatch];
    uint32_t n = 0;
    for (uint32_t i = first; i < ring_count && i < first + kBatch; ++i) {
      auto* r = reinterpret_cast<proto::RingControl*>(g.rings + g.ring_stride * i);
      if (r->state.load(std::memory_order_acquire) != static_cast<uint32_t>(proto::RingState::Active) ||
          !r->pthread_id)
        continue;
      // A probe thread of an earlier attach is closed too (each attach starts
      // one, with a ring of its own); only the program's rings are counted.
      if (!(r->flags & proto::kRingOwnThread)) ++*in_use;
      rings[n] = r;
      remote[n] = {reinterpret_cast<void*>(r->pthread_id + tid_offset), sizeof(int32_t)};
      local[n] = {&tids[n], sizeof(int32_t)};
      ++n;
    }
    for (uint32_t done = 0; done < n;) {
      const ssize_t got = process_vm_readv(getpid(), local + done, n - done, remote + done,
                                           n - done, 0);
      if (got < 0 && errno != EFAULT) return closed;  // not allowed here: leave rings alone
      // Entries up to the first fault were read; that one is gone.
      const uint32_t read = got > 0 ? static_cast<uint32_t>(got) / sizeof(int32_t) : 0;
      for (uint32_t k = done; k < done + read; ++k) {
        if (static_cast<uint32_t>(tids[k]) == rings[k]->tid) continue;
        rings[k]->state.store(static_cast<uint32_t>(proto::RingState::Closed),
                              std::memory_order_release);
        ++closed;
      }
      done += read;
      if (done < n) {
        rings[done]->state.store(static_cast<uint32_t>(proto::RingState::Closed),
                                 std::memory_order_release);
        ++closed;
        ++done;
      }
    }
  }
  return closed;
}

void confirm_tid_offset() {
  // A second thread must have its tid at the same place; otherwise look for
  // the next match in the first thread's struct is not possible from here,
  // so naming at thread start simply stays off.
  if (g_tid_offset.load() >= 0 || g_tid_candidate < 0) return;
  char buf[4];
  int32_t v = 0;
  if (safe_read(static_cast<uintptr_t>(pthread_self()) + g_tid_candidate, buf, 4)) {
    std::memcpy(&v, buf, 4);
    if (v == static_cast<int32_t>(syscall(SYS_gettid))) g_tid_offset.store(g_tid_candidate);
  }
}

// Before the real pthread_create: `routine` and `arg` are what the
// interpreter passes.  For a Python thread that is pythread_wrapper and a
// {func, arg} callback whose arg is the bootstate; the bootstate's second
// word is the callable, the bound method Thread._bootstrap (3.8–3.15
// alike), whose __self__ is the threading.Thread.  Read now: the new thread
// frees the callback as soon as it runs, before it waits for the GIL.
uintptr_t python_thread_method(void* (*routine)(void*), void* arg) {
  if (!g_api_ok || g_tid_offset.load(std::memory_order_relaxed) < 0 || t_naming ||
      !g.recording.load(std::memory_order_acquire))
    return 0;
  if (!in_interpreter_text(reinterpret_cast<uintptr_t>(routine))) return 0;
  uintptr_t callback[2];  // {func, arg}
  if (!safe_read(reinterpret_cast<uintptr_t>(arg), callback, sizeof(callback))) return 0;
  if (!in_interpreter_text(callback[0])) return 0;
  uintptr_t boot[2];
  if (!safe_read(callback[1], boot, sizeof(boot))) return 0;
  // ob_type: after ob_refcnt in default builds; free-threaded objects have
  // ob_tid, flags, mutex, gc bits, ob_ref_local and ob_ref_shared first.
  uintptr_t type = 0;
  const size_t type_at = g.locator.free_threaded ? 24 : 8;
  if (!safe_read(boot[1] + type_at, &type, sizeof(type)) || type != g_api.method_type) return 0;
  // Our own reference: the new thread may finish and free its bootstate
  // before we read the name (a free-threaded build running without its GIL
  // does not wait for us).  The C API needs the caller's thread state.
  if (!g_api.gil_check() || g_api.err_occurred()) return 0;
  g_api.inc_ref(reinterpret_cast<PyObject*>(boot[1]));
  return boot[1];
}

void name_started_thread(int create_rc, pthread_t thread, uintptr_t method) {
  t_naming = 1;
  int32_t tid = 0;
  const int tid_offset = g_tid_offset.load(std::memory_order_relaxed);
  if (create_rc != 0 ||
      !safe_read(static_cast<uintptr_t>(thread) + tid_offset, &tid, sizeof(tid)) || tid <= 0) {
    g_api.dec_ref(reinterpret_cast<PyObject*>(method));
    t_naming = 0;
    return;
  }
  auto* self = g_api.method_self(reinterpret_cast<PyObject*>(method));  // borrowed
  PyObject* cls = self ? g_api.object_type(self) : nullptr;
  // Only a plain attribute read: a class with __getattr__/__getattribute__
  // would run Python code in the middle of thread start.
  const bool plain = cls && g_api.type_get_slot(cls, kPyTpGetattro) == g_api.generic_getattr;
  if (cls) g_api.dec_ref(cls);
  PyObject* name = plain ? g_api.get_attr_string(self, "_name") : nullptr;
  ssize_t len = 0;
  const char* text = name ? g_api.unicode_as_utf8(name, &len) : nullptr;
  if (text && len > 0)
    publish_name(static_cast<uint32_t>(tid), text, static_cast<size_t>(len),
                 proto::NameSource::ThreadStart);
  if (name) g_api.dec_ref(name);
  if (g_api.err_occurred()) g_api.err_clear();
  g_api.dec_ref(reinterpret_cast<PyObject*>(method));
  t_naming = 0;
}

}  // namespace gilstat::probe

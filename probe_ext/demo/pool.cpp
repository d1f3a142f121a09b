// pool(): native worker threads that call back into Python.
//
// The threads are std::threads, unknown to Python's `threading` module (so
// gilstat shows them as native-<tid>).  Each callback goes through
// PyGILState_Ensure/Release, which on a thread without a thread state creates
// one, takes the GIL, and on Release destroys it and drops the GIL again:
// the re-acquire pattern whose cost the `pool` demo shows.
#include "python_api.hpp"

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "bindings.hpp"
#include "native_work.hpp"

namespace {

using namespace gilstat::demo;

struct Worker {
  uint32_t tid = 0;
  uint64_t calls = 0;
  uint64_t wait_ns = 0;  // Σ time inside PyGILState_Ensure
  uint64_t held_ns = 0;  // Σ time from Ensure's return to the Release call
  bool failed = false;
};

void work(Worker* w, unsigned long long calls, PyObject* callback, uint64_t native_ns) {
  w->tid = current_tid();
  for (unsigned long long i = 0; i < calls; ++i) {
    // The pool's own work, e.g. waiting for I/O to complete: GIL-free and,
    // being a sleep, CPU-free, so the busy Python thread keeps a core and the
    // waits measured are waits for the GIL, not for a CPU.
    sleep_until(now_ns() + native_ns);
    const uint64_t asked = now_ns();
    const PyGILState_STATE st = PyGILState_Ensure();
    const uint64_t got = now_ns();
    PyObject* r = PyObject_CallObject(callback, nullptr);
    if (!r) {
      PyErr_Print();
      w->failed = true;
    }
    Py_XDECREF(r);
    const uint64_t done = now_ns();
    PyGILState_Release(st);
    w->wait_ns += got - asked;
    w->held_ns += done - got;
    w->calls++;
    if (w->failed) return;
  }
}

}  // namespace

// pool(n_threads, calls, callback, native_us) -> [{"tid", "calls", "wait_ns", "held_ns"}]
// Each worker, `calls` times: native_us of native waiting, then callback().
extern "C" PyObject* gilstat_demo_pool(PyObject*, PyObject* args) {
  unsigned int n_threads;
  unsigned long long calls;
  PyObject* callback;
  double native_us;
  if (!PyArg_ParseTuple(args, "IKOd", &n_threads, &calls, &callback, &native_us)) return nullptr;
  if (n_threads == 0 || n_threads > 64 || native_us < 0 || !PyCallable_Check(callback)) {
    PyErr_SetString(PyExc_ValueError, "need 1..64 threads, a callable and native_us >= 0");
    return nullptr;
  }
  std::vector<Worker> workers(n_threads);
  const auto native_ns = static_cast<uint64_t>(native_us * 1e3);
  // The workers need the GIL for their callbacks: release it while we wait.
  Py_BEGIN_ALLOW_THREADS;
  std::vector<std::thread> threads;
  for (auto& w : workers) threads.emplace_back(work, &w, calls, callback, native_ns);
  for (auto& t : threads) t.join();
  Py_END_ALLOW_THREADS;

  PyObject* out = PyList_New(0);
  if (!out) return nullptr;
  for (const auto& w : workers) {
    if (w.failed) {
      Py_DECREF(out);
      PyErr_SetString(PyExc_RuntimeError, "a pool callback raised (traceback above)");
      return nullptr;
    }
    PyObject* d = Py_BuildValue("{s:I,s:K,s:K,s:K}", "tid", static_cast<unsigned>(w.tid), "calls",
                                static_cast<unsigned long long>(w.calls), "wait_ns",
                                static_cast<unsigned long long>(w.wait_ns), "held_ns",
                                static_cast<unsigned long long>(w.held_ns));
    if (!d || PyList_Append(out, d) != 0) {
      Py_XDECREF(d);
      Py_DECREF(out);
      return nullptr;
    }
    Py_DECREF(d);
  }
  return out;
}

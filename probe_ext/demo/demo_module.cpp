// _gilstat_demo: native primitives with known GIL behaviour, for the demo
// scripts (see scripts/).  Stable ABI (3.8+): one binary for every supported
// interpreter with a GIL, plus a copy per free-threaded interpreter (see
// python_api.hpp); it links no libpython.  Every function states exactly when
// it holds the GIL, because the demos check gilstat's numbers against that.
#include "python_api.hpp"

#include <cstdint>

#include "bindings.hpp"
#include "native_work.hpp"

namespace {

using namespace gilstat::demo;

// busy_sum(n, passes, release_gil) -> (sum, native_ns)
PyObject* busy_sum(PyObject*, PyObject* args) {
  Py_ssize_t n;
  unsigned long long passes;
  int release_gil;
  if (!PyArg_ParseTuple(args, "nKp", &n, &passes, &release_gil)) return nullptr;
  if (n <= 0) {
    PyErr_SetString(PyExc_ValueError, "n must be positive");
    return nullptr;
  }
  uint64_t sum, t0, t1;
  if (release_gil) {
    Py_BEGIN_ALLOW_THREADS;
    t0 = now_ns();
    sum = sum_buffer(static_cast<size_t>(n), passes);
    t1 = now_ns();
    Py_END_ALLOW_THREADS;
  } else {
    t0 = now_ns();
    sum = sum_buffer(static_cast<size_t>(n), passes);
    t1 = now_ns();
  }
  return Py_BuildValue("(KK)", static_cast<unsigned long long>(sum),
                       static_cast<unsigned long long>(t1 - t0));
}

// hold_for(ms) -> native_ns: spins with the GIL held for exactly ms.
PyObject* hold_for(PyObject*, PyObject* args) {
  double ms;
  if (!PyArg_ParseTuple(args, "d", &ms)) return nullptr;
  if (ms < 0) {
    PyErr_SetString(PyExc_ValueError, "ms must be >= 0");
    return nullptr;
  }
  const uint64_t t0 = now_ns();
  spin_until(t0 + static_cast<uint64_t>(ms * 1e6));
  return PyLong_FromUnsignedLongLong(now_ns() - t0);
}

// duty(period_ms, percent, periods) -> (held_ns, elapsed_ns, overruns)
//
// Each period: hold the GIL (spinning) for percent % of the period, counted
// from the moment we got it back, then release it and sleep to the next
// period boundary.  Timing the hold from the re-acquisition keeps a late
// wake-up from shortening it; absolute boundaries keep lateness from adding
// up.  On a loaded machine the scheduler can preempt the spin and stretch a
// hold by a time slice (milliseconds): the next periods then hold that much
// less, so Σ held stays percent % of Σ periods, which is what the demo
// checks.  `overruns` counts periods whose hold ended after the boundary.
PyObject* duty(PyObject*, PyObject* args) {
  double period_ms, percent;
  unsigned long long periods;
  if (!PyArg_ParseTuple(args, "ddK", &period_ms, &percent, &periods)) return nullptr;
  if (period_ms <= 0 || percent <= 0 || percent >= 100) {
    PyErr_SetString(PyExc_ValueError, "need period_ms > 0 and 0 < percent < 100");
    return nullptr;
  }
  const auto period = static_cast<uint64_t>(period_ms * 1e6);
  const auto hold = static_cast<uint64_t>(period_ms * 1e6 * percent / 100.0);
  uint64_t held = 0, overruns = 0;
  const uint64_t start = now_ns();
  uint64_t boundary = start;
  for (unsigned long long k = 0; k < periods; ++k) {
    const uint64_t acquired = now_ns();
    const uint64_t owed = (k + 1) * hold;  // Σ hold due by the end of this period
    spin_until(acquired + (owed > held ? owed - held : 0));
    const uint64_t released = now_ns();
    held += released - acquired;
    boundary += period;
    if (released > boundary) overruns++;
    Py_BEGIN_ALLOW_THREADS;
    sleep_until(boundary);
    Py_END_ALLOW_THREADS;
  }
  return Py_BuildValue("(KKK)", static_cast<unsigned long long>(held),
                       static_cast<unsigned long long>(now_ns() - start),
                       static_cast<unsigned long long>(overruns));
}

// atomics(n_threads, seconds) -> dict.  The GIL is released for the whole
// run: the native threads never touch Python.
PyObject* atomics(PyObject*, PyObject* args) {
  unsigned int threads;
  double seconds;
  if (!PyArg_ParseTuple(args, "Id", &threads, &seconds)) return nullptr;
  if (threads == 0 || threads > 64 || seconds < 0) {
    PyErr_SetString(PyExc_ValueError, "need 1..64 threads and seconds >= 0");
    return nullptr;
  }
  AtomicsResult r;
  Py_BEGIN_ALLOW_THREADS;
  r = run_atomics(threads, seconds);
  Py_END_ALLOW_THREADS;
  PyObject* tids = PyList_New(0);
  if (!tids) return nullptr;
  for (uint32_t tid : r.tids) {
    PyObject* v = PyLong_FromUnsignedLong(tid);
    if (!v || PyList_Append(tids, v) != 0) {
      Py_XDECREF(v);
      Py_DECREF(tids);
      return nullptr;
    }
    Py_DECREF(v);
  }
  return Py_BuildValue("{s:N,s:K,s:K,s:K,s:N}", "tids", tids, "increments",
                       static_cast<unsigned long long>(r.increments), "pushed",
                       static_cast<unsigned long long>(r.pushed), "popped",
                       static_cast<unsigned long long>(r.popped), "checksum_ok",
                       PyBool_FromLong(r.checksum_ok));
}

PyMethodDef methods[] = {
    {"busy_sum", busy_sum, METH_VARARGS,
     "busy_sum(n, passes, release_gil) -> (sum, native_ns): `passes` passes over n values, "
     "holding the GIL throughout or releasing it (Py_BEGIN_ALLOW_THREADS)."},
    {"hold_for", hold_for, METH_VARARGS,
     "hold_for(ms) -> native_ns: spin natively for ms milliseconds holding the GIL."},
    {"duty", duty, METH_VARARGS,
     "duty(period_ms, percent, periods) -> (held_ns, elapsed_ns, overruns): hold the GIL "
     "percent % of each period, sleep (GIL released) for the rest."},
    {"pool", gilstat_demo_pool, METH_VARARGS,
     "pool(n_threads, calls, callback, native_us) -> [dict]: native std::threads (not Python "
     "threads) that each wait native_us natively (a sleep) then call callback() under "
     "PyGILState_Ensure/Release, `calls` times."},
    {"atomics", atomics, METH_VARARGS,
     "atomics(n_threads, seconds) -> dict: native threads sharing a lock-free counter and "
     "queue, with the GIL released."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module = {PyModuleDef_HEAD_INIT,
                      "_gilstat_demo",
                      "Native workloads with known GIL behaviour, for `gilstat demo`.",
                      -1,
                      methods,
                      nullptr,
                      nullptr,
                      nullptr,
                      nullptr};

}  // namespace

// Deliberately no Py_mod_gil slot (nor PyUnstable_Module_SetGIL): like most
// extensions today it is not marked free-threading-safe, so importing it into
// a free-threaded build re-enables the GIL (with a RuntimeWarning).  gilstat's
// tests rely on that to see a GIL turn on mid-run; `gilstat demo` sets
// PYTHON_GIL=1 there anyway.
PyMODINIT_FUNC PyInit__gilstat_demo(void) { return PyModule_Create(&module); }

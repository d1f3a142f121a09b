/* _gilstat_probe: the Python-importable face of the probe.
 *
 * Built against the stable ABI (Py_LIMITED_API 3.8): one binary for every
 * interpreter 3.8+.  It links no libpython (symbols resolve against the
 * importing interpreter) and no probe code: it dlopen()s
 * libgilstat_probe.so from the directory above its own and calls its
 * exported gilstat_probe_* functions. */
#define Py_LIMITED_API 0x03080000
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

static void* probe_handle(char* path_out, size_t len) {
  Dl_info info;
  if (!dladdr((void*)&probe_handle, &info) || !info.dli_fname) return NULL;
  /* .../lib/gilstat/python/_gilstat_probe.abi3.so -> .../lib/gilstat/libgilstat_probe.so */
  char dir[PATH_MAX];
  snprintf(dir, sizeof(dir), "%s", info.dli_fname);
  char* slash = strrchr(dir, '/');
  if (slash) *slash = '\0';
  slash = strrchr(dir, '/');
  if (slash) *slash = '\0';
  snprintf(path_out, len, "%s/libgilstat_probe.so", dir);
  /* RTLD_NOLOAD first: under `gilstat run` the probe is already preloaded. */
  void* h = dlopen("libgilstat_probe.so", RTLD_NOW | RTLD_NOLOAD);
  return h ? h : dlopen(path_out, RTLD_NOW | RTLD_LOCAL);
}

static void* load_or_raise(void) {
  char path[PATH_MAX];
  void* h = probe_handle(path, sizeof(path));
  if (!h) PyErr_Format(PyExc_ImportError, "cannot load %s: %s", path, dlerror());
  return h;
}

static PyObject* probe_path(PyObject* self, PyObject* args) {
  (void)self;
  (void)args;
  char path[PATH_MAX];
  probe_handle(path, sizeof(path));
  return PyUnicode_FromString(path);
}

static PyObject* status(PyObject* self, PyObject* args) {
  (void)self;
  (void)args;
  void* h = load_or_raise();
  if (!h) return NULL;
  int (*fn)(char*, size_t) = (int (*)(char*, size_t))dlsym(h, "gilstat_probe_status");
  if (!fn) return PyErr_Format(PyExc_RuntimeError, "probe has no gilstat_probe_status");
  char buf[512];
  fn(buf, sizeof(buf));
  return PyUnicode_FromString(buf);
}

static PyObject* stop(PyObject* self, PyObject* args) {
  (void)self;
  (void)args;
  void* h = load_or_raise();
  if (!h) return NULL;
  int (*fn)(void) = (int (*)(void))dlsym(h, "gilstat_probe_stop");
  if (!fn) return PyErr_Format(PyExc_RuntimeError, "probe has no gilstat_probe_stop");
  return PyLong_FromLong(fn());
}

static PyObject* start(PyObject* self, PyObject* args) {
  (void)self;
  const char* config = "";
  if (!PyArg_ParseTuple(args, "|s", &config)) return NULL;
  void* h = load_or_raise();
  if (!h) return NULL;
  long long (*fn)(const char*) = (long long (*)(const char*))dlsym(h, "gilstat_probe_start");
  if (!fn) return PyErr_Format(PyExc_RuntimeError, "probe has no gilstat_probe_start");
  /* Only patches GOT slots and starts a thread: safe to call with the GIL held. */
  return PyLong_FromLongLong(fn(config));
}

static PyMethodDef methods[] = {
    {"start", start, METH_VARARGS,
     "start(config='') -> fd of the shared region, or a negative error code."},
    {"probe_path", probe_path, METH_NOARGS, "Path of libgilstat_probe.so used by this module."},
    {"status", status, METH_NOARGS, "One line describing the probe in this process."},
    {"stop", stop, METH_NOARGS, "Stop recording and restore the GOT; returns slots restored."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_gilstat_probe",
                                    "Control of the gilstat probe in this process.", -1,
                                    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__gilstat_probe(void) { return PyModule_Create(&module); }

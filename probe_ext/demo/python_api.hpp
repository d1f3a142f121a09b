// Python.h for the demo extension, included first by every file that uses it.
//
// The abi3 build (one binary for every CPython with a GIL) uses the stable
// ABI.  The copies built for free-threaded interpreters cannot: 3.13t and
// 3.14t have no limited API, so CMake defines GILSTAT_DEMO_FULL_API for them.
#pragma once

#ifndef GILSTAT_DEMO_FULL_API
#define Py_LIMITED_API 0x03080000
#endif
#define PY_SSIZE_T_CLEAN
#include <Python.h>

// Module functions defined outside demo_module.cpp.  Python.h must come
// first in every file that includes this.
#pragma once

extern "C" PyObject* gilstat_demo_pool(PyObject* self, PyObject* args);

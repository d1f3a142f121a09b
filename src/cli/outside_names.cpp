#include "cli/outside_names.hpp"

#include <fmt/core.h>

#include <iostream>

#include "common/error.hpp"
#include "pyruntime/runtime_reader.hpp"

namespace gilstat::cli {

void name_threads_from_outside(const attach::PreflightResult& target, Capture& capture) {
  try {
    attach::LiveRemoteMemory memory(target.pid);
    const pyruntime::PySnapshot snap =
        pyruntime::read_runtime(memory, target.pid, target.py_runtime, target.version_hex);
    capture.add_outside_names(pyruntime::thread_names(snap));
  } catch (const Error& e) {
    std::cerr << fmt::format("gilstat: note: thread names from outside not read: {}\n", e.what());
  }
}

}  // namespace gilstat::cli

// Thread names read from outside the target when attaching (record --pid,
// top --pid): the threads already running get their `threading` names even
// when the probe never gets the GIL to read them (a stuck process).
#pragma once

#include "attach/preflight.hpp"
#include "cli/capture.hpp"

namespace gilstat::cli {

// Reads the target's thread states (memory only, pyruntime) and hands the
// names to `capture`, with the threads that held or waited for a GIL when
// the probe armed it (their time counts from the arm).  Best effort: a target whose runtime cannot
// be read keeps the probe's names alone, and says so on stderr.
void name_threads_from_outside(const attach::PreflightResult& target, Capture& capture);

}  // namespace gilstat::cli

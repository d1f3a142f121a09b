// Files gilstat ships next to itself.  The build tree mirrors the installed
// tree (bin/, lib/gilstat/, share/gilstat/), so one rule serves both.
#pragma once

#include <string>

namespace gilstat {

std::string executable_dir();
// lib/gilstat/libgilstat_probe.so relative to the executable; GILSTAT_PROBE
// overrides.  Throws gilstat::Error when it is missing or unreadable.
std::string probe_library_path();

}  // namespace gilstat

// Files gilstat ships next to itself.  The build tree mirrors the installed
// tree (<bindir>, <libdir>/gilstat, <datadir>/gilstat), and the paths from
// bindir to the others are compiled in, so one rule serves both.
#pragma once

#include <string>

namespace gilstat {

std::string executable_dir();
// <libdir>/gilstat and <datadir>/gilstat, reached from executable_dir().
std::string installed_libdir();
std::string installed_datadir();
// <libdir>/gilstat/libgilstat_probe.so relative to the executable; GILSTAT_PROBE
// overrides.  Throws gilstat::Error when it is missing or unreadable.
std::string probe_library_path();

}  // namespace gilstat

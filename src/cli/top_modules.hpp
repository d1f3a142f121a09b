// `top`'s "GIL by module" lines: the extension modules that released the GIL
// or called back into Python the most during the interval (report/modules.hpp).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "report/report.hpp"

namespace gilstat::cli {

// A title line and up to max_rows module lines, busiest in the interval
// first; nothing when no module made a call in it.
std::vector<std::string> top_module_lines(const report::Report& prev, const report::Report& now,
                                          double interval_s, size_t max_rows);

}  // namespace gilstat::cli

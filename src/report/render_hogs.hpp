// Long holds (hogs.hpp) for people and programs: the text report's "GIL
// hogs" section, the JSON field `hogs`, and their lines in `gilstat export
// --format collapsed` ("long holds;outer;...;inner N", N = held ns).
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "report/report.hpp"

namespace gilstat::report {

// Empty when the report has no long hold.  At most `entries` stacks, each
// with at most `frames` frames (innermost first).
std::vector<std::string> hogs_section(const Report& r, size_t entries, size_t frames);

// {"holds": int, "samples": int, "lost": int, "held_s": float, "caused_wait_s": float,
//  "entries": [{"holds": int, "held_s": float, "longest_s": float, "caused_wait_s": float,
//               "waiting": [str], "stack": [{"kind": "python"|"native", "function": str,
//               "file": str, "line": int, "object": str, "offset": int}]}]}
std::string hogs_json(const Report& r);

void render_hogs_collapsed(const Report& r, std::ostream& out);

}  // namespace gilstat::report

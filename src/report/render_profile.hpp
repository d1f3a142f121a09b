// The held-time profile (gil_profile.hpp) for people and programs: the text
// report's "GIL held by function" section, the JSON field `gil_profile`, and
// `gilstat export --format collapsed` (folded stacks for flamegraph.pl,
// speedscope, inferno: "group;outer;...;inner N", N = held nanoseconds).
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "report/report.hpp"

namespace gilstat::report {

// Empty when the report has no samples.  At most `entries` functions overall
// and 3 for each of the 3 groups that held the GIL longest (when more than
// one group was sampled).
std::vector<std::string> profile_section(const Report& r, size_t entries);

// {"samples": int, "sampled_held_s": float, "unsampled_held_s": float,
//  "functions": [{"function": str, "file": str, "line": int, "held_s": float,
//                 "total_s": float, "share": float}],   // held_s: self; share of all held
//  "groups": [{"group": str, "held_s": float, "functions": [...]}]}
std::string profile_json(const Report& r);

// One line per stack; every thread's held time is in it (threads never
// sampled as "group;(not sampled)"), so the lines add up to the GILs' held time.
void render_collapsed(const Report& r, std::ostream& out);

}  // namespace gilstat::report

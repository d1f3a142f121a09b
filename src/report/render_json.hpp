// `gilstat report --json`: the stable, machine-readable form of a Report.
//
// {"gilstat_version": str, "pid": int, "command": str, "duration_s": float,
//  "clock": "monotonic"|"tsc", "ns_per_tick": float,
//  "python": {"version": str, "version_hex": int, "free_threaded": bool,
//             "libpython": "static"|"shared"},
//  "drops": int,            // ring-full drops of all threads + drops_no_ring
//  "drops_no_ring": int,
//  "gils": [{"id": int, "address": "0x…", "interpreters": [int],
//            "utilization": float,          // raw, may exceed 1 (never clamped)
//            "acquisitions": int, "switches": int, "switch_number_delta": int,
//            "forced_switch_requests": int, "forced_handoffs": int,
//            "seq_gaps": int, "seq_stale": int, "anomalies": int,
//            "wait_ns": D, "hold_ns": D, "handoff_ns": D}],
//  "threads": [{"tid": int, "name": str, "own": bool, "gil": int,
//               "lifetime_s": float, "held_s": float, "wait_s": float,
//               "released_s": float, "acquisitions": int, "forced_handoffs": int,
//               "drops": int, "anomalies": int, "wait_ns": D, "hold_ns": D}]}
// D = {"p50": int, "p90": int, "p99": int, "max": int, "total": int, "count": int}
//
// Strings from the target (command, thread names) are escaped and invalid
// UTF-8 is replaced by U+FFFD, so the output is always valid JSON.
#pragma once

#include <ostream>
#include <string>
#include <string_view>

#include "report/report.hpp"

namespace gilstat::report {

void render_json(const Report& report, std::ostream& out);

// A JSON string literal (with the quotes) for arbitrary bytes.
std::string json_string(std::string_view bytes);

}  // namespace gilstat::report

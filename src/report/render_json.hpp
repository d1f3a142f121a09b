// `gilstat report --json`: the stable, machine-readable form of a Report.
//
// {"gilstat_version": str,
//  "pid": int,        // as the target sees itself (1 in a container's PID namespace)
//  "host_pid": int,   // as gilstat's host sees it (`--pid`, `top`); == pid when not namespaced
//  "command": str, "duration_s": float,
//  "clock": "monotonic"|"tsc", "ns_per_tick": float,
//  "python": {"version": str, "version_hex": int, "free_threaded": bool,
//             "libpython": "static"|"shared"},
//  "drops": int,            // ring-full drops of all threads + drops_no_ring
//  "drops_no_ring": int,
//  "untracked_events": int, // events of threads past the row limit (65536)
//  "totals_exact": bool,    // times, acquisitions, switches and forced-switch counts
//                           // are the probe's own counts: exact whatever was dropped
//                           // (then only percentiles and histograms miss events)
//  "recording": {"from_file": bool, "format_version": int, "host": str,
//                "start_unix_s": float, "truncated": bool,   // cut off: partial figures
//                "calibrated": bool, "corrupt_chunks": int, "skipped_bytes": int,
//                "problems": [str]},
//  "window": {"partial": bool, "since_s": float, "until_s": float},  // --since/--until
//  "findings": [{"id": str, "severity": "warning"|"info", "text": str}],  // findings.hpp
//  "gils": [{"id": int, "address": "0x…", "interpreters": [int],
//            "utilization": float,          // raw, may exceed 1 (never clamped)
//            "mean_waiting_threads": float, // Σ waits / window
//            "acquisitions": int, "switches": int, "switch_number_delta": int,
//            "forced_switch_requests": int, "forced_handoffs": int,
//            "seq_gaps": int, "seq_stale": int, "anomalies": int,
//            "wait_ns": D, "hold_ns": D, "handoff_ns": D,
//            "drop_latency_ns": D,          // forced-switch request -> release
//            "switch_number_known": bool,   // false: partial window or cut-off file
//            // free-threaded builds (else 0.0 and []): time the GIL was disabled,
//            // and its gil->enabled at the window's start and at each change
//            // (0 disabled, 2147483647 for good, n: n transient requests)
//            "disabled_s": float, "enabled_changes": [{"t_s": float, "enabled": int}],
//            "enabled_changes_lost": int}],  // changes not kept: disabled_s approximate
//  "threads": [{"tid": int,              // in the target's own PID namespace
//               "host_tid": int|null,   // as the host sees it; null: ended before looked up
//               "name": str, "group": str, "own": bool, "gil": int,
//               "lifetime_s": float, "held_s": float, "wait_s": float,
//               "released_s": float, "acquisitions": int, "forced_handoffs": int,
//               "drops": int, "anomalies": int, "wait_ns": D, "hold_ns": D,
//               "drop_latency_ns": D}],     // as the holder asked to drop
//  // Threads of one kind on one GIL (groups.hpp); every thread in one group.
//  "groups": [{"key": str, "gil": int, "own": bool,
//              "folded": bool,             // one row in the text table (>= 5 threads)
//              "size": int, "tids": [int],     // members
//              "lifetime_s": float, "held_s": float, "wait_s": float, "released_s": float,
//              "acquisitions": int, "forced_handoffs": int, "drops": int, "anomalies": int,
//              "member_held_s": {"p50": float, "p99": float, "max": float},
//              "wait_ns": D, "hold_ns": D,  // all the members' waits / holds
//              "drop_requests": int, "drop_latency_max_ns": int}],
//  "gil_profile": {...}}   // held time by Python function (render_profile.hpp)
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
// A float as JSON: shortest round-trip, always a float ("1.0"), null for NaN/inf.
std::string json_number(double v);

}  // namespace gilstat::report

// `gilstat export --format prometheus`: the Prometheus text exposition
// format (version 0.0.4), e.g. for node_exporter's textfile collector.
//
//   # HELP gilstat_gil_utilization_ratio Share of the window the GIL was held.
//   # TYPE gilstat_gil_utilization_ratio gauge
//   gilstat_gil_utilization_ratio{pid="4242",gil="0"} 0.991
//   # TYPE gilstat_gil_hold_duration_seconds histogram
//   gilstat_gil_hold_duration_seconds_bucket{pid="4242",gil="0",le="1e-06"} 12
//   ...                                                          le="+Inf"} 1875
//   gilstat_gil_hold_duration_seconds_sum{pid="4242",gil="0"} 2.09
//   gilstat_gil_hold_duration_seconds_count{pid="4242",gil="0"} 1875
//   gilstat_thread_held_seconds_total{pid="4242",gil="0",thread="spin-0",tid="4243"} 0.636
//
// Families: per recording (duration, truncated, drops), per GIL (utilisation,
// acquisitions, switches, forced-switch requests and hand-offs; wait, hold,
// hand-off and request->drop histograms), per thread (held/wait/released
// seconds, acquisitions, forced hand-offs; wait and hold histograms).
// Histogram buckets are cumulative over kPrometheusBuckets; a log bucket of
// the report's histograms counts in the first `le` at or above its middle.
#pragma once

#include <ostream>
#include <span>

#include "report/report.hpp"

namespace gilstat::report {

// Upper bounds (seconds) of the exposed histogram buckets, then +Inf.
inline constexpr double kPrometheusBuckets[] = {1e-6, 1e-5, 1e-4,   5e-4, 1e-3, 2.5e-3,
                                                5e-3, 1e-2, 2.5e-2, 5e-2, 0.1,  0.25,
                                                0.5,  1.0,  2.5,    5.0,  10.0};

void render_prometheus(const Report& report, std::ostream& out);

// A label value as the format wants it: valid UTF-8, with \, " and newline
// escaped.
std::string prometheus_label_value(std::string_view bytes);

}  // namespace gilstat::report

// The Prometheus exposition of a report, shared by `gilstat export --format
// prometheus` (a recording, text format 0.0.4, e.g. for node_exporter's
// textfile collector) and `gilstat exporter` (live targets, text format or
// OpenMetrics 1.0).  One label schema for both:
//
//   per process      pid, command
//   per GIL          pid, command, gil
//   per thread kind  pid, command, gil, group   (exporter: the top groups + "other")
//   per thread       pid, command, gil, group, thread, tid   (export only)
//
//   # HELP gilstat_gil_acquisitions_total GIL acquisitions.
//   # TYPE gilstat_gil_acquisitions_total counter
//   gilstat_gil_acquisitions_total{pid="4242",command="python3 svc.py",gil="0"} 1875
//   gilstat_gil_hold_duration_seconds_bucket{pid="4242",command="python3
//   svc.py",gil="0",le="1e-06"} 12
//
// `command` is the program's name plus at most kCommandArgsChars characters
// of its arguments (command_label); it is left out when empty (the exporter's
// --no-command-label: argv can hold secrets).  Histogram buckets are
// cumulative over kPrometheusBuckets; a log bucket of the report's
// histograms counts in the first `le` at or above its middle.  Counters and
// histograms get `_created` in OpenMetrics only (the text format has no
// place for it).
#pragma once

#include <functional>
#include <ostream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "report/report.hpp"

namespace gilstat::report {

// Upper bounds (seconds) of the exposed histogram buckets, then +Inf.
inline constexpr double kPrometheusBuckets[] = {1e-6, 1e-5, 1e-4,   5e-4, 1e-3, 2.5e-3,
                                                5e-3, 1e-2, 2.5e-2, 5e-2, 0.1,  0.25,
                                                0.5,  1.0,  2.5,    5.0,  10.0};

inline constexpr size_t kCommandArgsChars = 60;

enum class ExpositionFormat {
  kPrometheus,   // text/plain; version=0.0.4
  kOpenMetrics,  // application/openmetrics-text; version=1.0.0
};
const char* content_type(ExpositionFormat format);

void render_prometheus(const Report& report, std::ostream& out);

// A label value as the format wants it: valid UTF-8, with \, " and newline
// escaped.
std::string prometheus_label_value(std::string_view bytes);

// The `command` label of a command line (arguments joined by spaces): the
// program's base name, then at most kCommandArgsChars characters of the
// arguments ("…" marks a cut), on a UTF-8 character boundary.
std::string command_label(std::string_view cmdline);

struct Label {
  const char* name;
  std::string value;
};
using Labels = std::vector<Label>;

// The labels of one process: pid, and command when not empty.
Labels process_labels(int pid, const std::string& command);

// Writes families: HELP and TYPE once, then every sample of the family
// together (several processes' samples go in one family).
class Exposition {
 public:
  Exposition(std::ostream& out, ExpositionFormat format) : out_(out), format_(format) {}

  // `name` as in the text format: a counter's ends with _total.
  void family(const char* name, const char* type, const char* help,
              const std::function<void()>& samples);
  void sample(const Labels& ls, double v, const char* suffix = "");
  // A counter sample; `created` (unix seconds) is written in OpenMetrics.
  void counter(const Labels& ls, double v, double created);
  void histogram(const Labels& ls, const Histogram& h_ns, double created = 0);
  // OpenMetrics' "# EOF"; nothing in the text format.
  void end();
  // Live series: every counter and histogram sample written from now on is
  // at least the value last written for that series (keyed by its name and
  // labels in `floor`), so that it never goes back.  A live snapshot counts
  // an open hold in the bucket of its length so far; the next one may place
  // it higher, which would lower a cumulative bucket below.
  void set_floor(std::unordered_map<std::string, double>* floor) { floor_ = floor; }

 private:
  // One sample line, its series (name and rendered labels) already built.
  void write(std::string series, double v);

  std::ostream& out_;
  ExpositionFormat format_;
  std::string name_;        // of the current family, as its samples are named
  std::string base_;        // without _total (a counter's _created)
  bool monotonic_ = false;  // a counter or histogram family
  std::unordered_map<std::string, double>* floor_ = nullptr;
};

// The per-GIL families, in order: a gauge or counter (value) or a histogram
// (hist).  Both commands write the same families from this table.
struct GilFamily {
  const char* name;
  const char* type;
  const char* help;
  double (*value)(const GilReport&);
  Histogram GilReport::*hist;
  bool live;  // also exposed by the exporter (a gauge of the whole window is not)
};
const std::vector<GilFamily>& gil_families();

// What a per-thread or per-group series counts.
struct ThreadSums {
  double held_ns = 0;
  double wait_ns = 0;
  double released_ns = 0;
  uint64_t acquisitions = 0;
  uint64_t forced_handoffs = 0;
};
ThreadSums sums_of(const ThreadReport& t);
ThreadSums sums_of(const GroupReport& g);

struct ThreadFamily {
  const char* name;
  const char* help;
  double (*value)(const ThreadSums&);
};
// The per-thread counter families (per group in the exporter).
const std::vector<ThreadFamily>& thread_families();

}  // namespace gilstat::report

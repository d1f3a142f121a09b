#include "report/prometheus.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "report/groups.hpp"
#include "report/host_ids.hpp"
#include "report/utf8.hpp"

namespace gilstat::report {
namespace {

// Go's strconv.ParseFloat reads all of these; shortest round-trip form.
std::string value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", v);
}

// `{a="x",b="y"` without the closing brace, so that a histogram appends its
// `le` to labels escaped once; "" for no labels.
std::string open_labels(const Labels& ls) {
  std::string out;
  for (size_t i = 0; i < ls.size(); ++i) {
    out += i ? ',' : '{';
    out += ls[i].name;
    out += "=\"";
    out += prometheus_label_value(ls[i].value);
    out += '"';
  }
  return out;
}

std::string labels(const Labels& ls) {
  std::string out = open_labels(ls);
  if (!out.empty()) out += '}';
  return out;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

const char* content_type(ExpositionFormat format) {
  return format == ExpositionFormat::kOpenMetrics
             ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
             : "text/plain; version=0.0.4; charset=utf-8";
}

std::string prometheus_label_value(std::string_view bytes) {
  std::string out;
  for (size_t i = 0; i < bytes.size();) {
    char32_t cp;
    i += utf8_decode(bytes, i, cp);
    if (cp == '\\') {
      out += "\\\\";
    } else if (cp == '"') {
      out += "\\\"";
    } else if (cp == '\n') {
      out += "\\n";
    } else {
      utf8_append(out, cp);
    }
  }
  return out;
}

std::string command_label(std::string_view cmdline) {
  const size_t space = cmdline.find(' ');
  std::string_view program = cmdline.substr(0, space);
  const size_t slash = program.rfind('/');
  if (slash != std::string_view::npos) program.remove_prefix(slash + 1);
  std::string out(program);
  if (space == std::string_view::npos) return out;
  const std::string_view args = cmdline.substr(space + 1);
  size_t i = 0, chars = 0;
  while (i < args.size() && chars < kCommandArgsChars) {
    char32_t cp;
    i += utf8_decode(args, i, cp);
    ++chars;
  }
  out += ' ';
  out += args.substr(0, i);
  if (i < args.size()) out += "…";
  return out;
}

Labels process_labels(int pid, const std::string& command) {
  Labels ls{{"pid", fmt::format("{}", pid)}};
  if (!command.empty()) ls.push_back({"command", command});
  return ls;
}

void Exposition::family(const char* name, const char* type, const char* help,
                        const std::function<void()>& samples) {
  name_ = name;
  base_ = name;
  const bool counter = std::string_view(type) == "counter";
  monotonic_ = counter || std::string_view(type) == "histogram";
  if (counter && ends_with(base_, "_total")) base_.resize(base_.size() - 6);
  // OpenMetrics names a counter family without its samples' _total.
  const std::string& declared = format_ == ExpositionFormat::kOpenMetrics ? base_ : name_;
  out_ << "# HELP " << declared << ' ' << help << '\n';
  out_ << "# TYPE " << declared << ' ' << type << '\n';
  samples();
}

void Exposition::sample(const Labels& ls, double v, const char* suffix) {
  write(name_ + suffix + labels(ls), v);
}

void Exposition::write(std::string series, double v) {
  if (floor_ && monotonic_) {
    auto [it, added] = floor_->try_emplace(series, v);
    if (!added) it->second = v = std::max(it->second, v);
  }
  out_ << series << ' ' << value(v) << '\n';
}

void Exposition::counter(const Labels& ls, double v, double created) {
  sample(ls, v);
  if (format_ == ExpositionFormat::kOpenMetrics && created > 0)
    out_ << base_ << "_created" << labels(ls) << ' ' << value(created) << '\n';
}

void Exposition::histogram(const Labels& ls, const Histogram& h_ns, double created) {
  // The bounds as written, formatted once.
  static const std::vector<std::string> bounds = [] {
    std::vector<std::string> out;
    for (double le : kPrometheusBuckets) out.push_back(value(le));
    out.push_back("+Inf");
    return out;
  }();
  // The labels are escaped once per series, not once per bucket: a scrape
  // writes ~20 bucket lines for each of hundreds of series.
  const std::string open = open_labels(ls);
  const std::string bucket_prefix = name_ + "_bucket" + open + (open.empty() ? "{le=\"" : ",le=\"");
  // Cumulative counts at each bound, each log bucket placed by its middle.
  const std::vector<Histogram::Bucket> buckets = h_ns.buckets();
  size_t next = 0;
  uint64_t cumulative = 0;
  for (size_t i = 0; i < std::size(kPrometheusBuckets); ++i) {
    const double le_ns = kPrometheusBuckets[i] * 1e9;
    while (next < buckets.size()) {
      const Histogram::Bucket& b = buckets[next];
      const double mid = static_cast<double>(b.lo + (b.hi - b.lo) / 2);
      if (mid > le_ns) break;
      cumulative += b.count;
      ++next;
    }
    write(bucket_prefix + bounds[i] + "\"}", static_cast<double>(cumulative));
  }
  write(bucket_prefix + bounds.back() + "\"}", static_cast<double>(h_ns.count()));
  const std::string closed = open.empty() ? open : open + "}";
  write(name_ + "_sum" + closed, static_cast<double>(h_ns.total()) / 1e9);
  write(name_ + "_count" + closed, static_cast<double>(h_ns.count()));
  if (format_ == ExpositionFormat::kOpenMetrics && created > 0)
    write(name_ + "_created" + closed, created);
}

void Exposition::end() {
  if (format_ == ExpositionFormat::kOpenMetrics) out_ << "# EOF\n";
}

const std::vector<GilFamily>& gil_families() {
  static const std::vector<GilFamily> families = {
      {"gilstat_gil_utilization_ratio", "gauge",
       "Share of the window the GIL was held (may exceed 1 on clock trouble).",
       [](const GilReport& g) { return g.utilization; }, nullptr, false},
      {"gilstat_gil_held_seconds_total", "counter", "Time the GIL was held.",
       [](const GilReport& g) { return static_cast<double>(g.hold_ns.total) / 1e9; }, nullptr,
       true},
      {"gilstat_gil_wait_seconds_total", "counter",
       "Time threads waited for the GIL (summed over the waiting threads).",
       [](const GilReport& g) { return static_cast<double>(g.wait_ns.total) / 1e9; }, nullptr,
       true},
      {"gilstat_gil_acquisitions_total", "counter", "GIL acquisitions.",
       [](const GilReport& g) { return static_cast<double>(g.acquisitions); }, nullptr, true},
      {"gilstat_gil_switches_total", "counter",
       "Acquisitions by a different thread state than the previous one.",
       [](const GilReport& g) { return static_cast<double>(g.switches); }, nullptr, true},
      {"gilstat_gil_forced_switch_requests_total", "counter",
       "Times a waiting thread asked the holder to drop the GIL.",
       [](const GilReport& g) { return static_cast<double>(g.forced_switch_requests); }, nullptr,
       true},
      {"gilstat_gil_forced_handoffs_total", "counter",
       "Releases where the holder waited until another thread took the GIL.",
       [](const GilReport& g) { return static_cast<double>(g.forced_handoffs); }, nullptr, true},
      {"gilstat_gil_disabled_seconds", "gauge",
       "Free-threaded builds: time of the window the GIL was disabled (0 otherwise).",
       [](const GilReport& g) { return g.disabled_ns / 1e9; }, nullptr, true},
      {"gilstat_gil_wait_duration_seconds", "histogram",
       "Time from wanting the GIL to acquiring it.", nullptr, &GilReport::wait_hist, true},
      {"gilstat_gil_hold_duration_seconds", "histogram",
       "Time from acquiring the GIL to releasing it.", nullptr, &GilReport::hold_hist, true},
      {"gilstat_gil_handoff_duration_seconds", "histogram",
       "Release by one thread to acquisition by another.", nullptr, &GilReport::handoff_hist, true},
      {"gilstat_gil_drop_latency_seconds", "histogram",
       "First forced-switch request during a hold to that hold's release.", nullptr,
       &GilReport::drop_latency_hist, true},
  };
  return families;
}

ThreadSums sums_of(const ThreadReport& t) {
  return {t.held_ns, t.wait_total_ns, t.released_ns, t.acquisitions, t.forced_handoffs};
}

ThreadSums sums_of(const GroupReport& g) {
  return {g.held_ns, g.wait_total_ns, g.released_ns, g.acquisitions, g.forced_handoffs};
}

const std::vector<ThreadFamily>& thread_families() {
  static const std::vector<ThreadFamily> families = {
      {"gilstat_thread_held_seconds_total", "Time the thread held the GIL.",
       [](const ThreadSums& s) { return s.held_ns / 1e9; }},
      {"gilstat_thread_wait_seconds_total", "Time the thread waited for the GIL.",
       [](const ThreadSums& s) { return s.wait_ns / 1e9; }},
      {"gilstat_thread_released_seconds_total",
       "Time the thread ran without the GIL (or was idle).",
       [](const ThreadSums& s) { return s.released_ns / 1e9; }},
      {"gilstat_thread_acquisitions_total", "GIL acquisitions by the thread.",
       [](const ThreadSums& s) { return static_cast<double>(s.acquisitions); }},
      {"gilstat_thread_forced_handoffs_total", "Forced hand-offs by the thread.",
       [](const ThreadSums& s) { return static_cast<double>(s.forced_handoffs); }},
  };
  return families;
}

void render_prometheus(const Report& r, std::ostream& out) {
  Exposition e(out, ExpositionFormat::kPrometheus);
  // The ids the host shows, for a target in another PID namespace.
  const Labels process = process_labels(r.host_pid ? r.host_pid : r.pid, command_label(r.command));
  const auto gil_labels = [&](uint32_t gil) {
    Labels ls = process;
    ls.push_back({"gil", fmt::format("{}", gil)});
    return ls;
  };
  const auto thread_labels = [&](const ThreadReport& t) {
    Labels ls = gil_labels(t.gil);
    ls.push_back({"group", group_key(t)});
    ls.push_back({"thread", t.name});
    ls.push_back({"tid", shown_tid(r, t)});
    return ls;
  };

  e.family("gilstat_recording_duration_seconds", "gauge", "Length of the measured window.",
           [&] { e.sample(process, r.duration_s); });
  e.family("gilstat_recording_truncated", "gauge",
           "1 when the recording was cut off and the figures cover only what was saved.",
           [&] { e.sample(process, r.recording.truncated ? 1 : 0); });
  e.family("gilstat_events_dropped_total", "counter",
           "Probe events lost (full ring or no free ring): the other figures undercount.",
           [&] { e.sample(process, static_cast<double>(r.drops)); });

  for (const GilFamily& f : gil_families()) {
    e.family(f.name, f.type, f.help, [&] {
      for (const GilReport& g : r.gils) {
        if (f.hist)
          e.histogram(gil_labels(g.id), g.*f.hist);
        else
          e.sample(gil_labels(g.id), f.value(g));
      }
    });
  }
  for (const ThreadFamily& f : thread_families()) {
    e.family(f.name, "counter", f.help, [&] {
      for (const ThreadReport& t : r.threads) e.sample(thread_labels(t), f.value(sums_of(t)));
    });
  }
  const auto thread_hist = [&](const char* name, const char* help, Histogram ThreadReport::*h) {
    e.family(name, "histogram", help, [&] {
      for (const ThreadReport& t : r.threads) e.histogram(thread_labels(t), t.*h);
    });
  };
  thread_hist("gilstat_thread_wait_duration_seconds", "The thread's waits for the GIL.",
              &ThreadReport::wait_hist);
  thread_hist("gilstat_thread_hold_duration_seconds", "The thread's holds of the GIL.",
              &ThreadReport::hold_hist);
}

}  // namespace gilstat::report

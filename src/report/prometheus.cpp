#include "report/prometheus.hpp"

#include <fmt/format.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "report/utf8.hpp"

namespace gilstat::report {
namespace {

// Go's strconv.ParseFloat reads all of these; shortest round-trip form.
std::string value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", v);
}

struct Label {
  const char* name;
  std::string value;
};

std::string labels(const std::vector<Label>& ls) {
  std::string out = "{";
  for (size_t i = 0; i < ls.size(); ++i)
    out +=
        fmt::format("{}{}=\"{}\"", i ? "," : "", ls[i].name, prometheus_label_value(ls[i].value));
  return out + "}";
}

class Exposition {
 public:
  explicit Exposition(std::ostream& out) : out_(out) {}

  // One family: HELP and TYPE once, then every sample of it together.
  void family(const char* name, const char* type, const char* help,
              const std::function<void()>& samples) {
    out_ << "# HELP " << name << ' ' << help << '\n';
    out_ << "# TYPE " << name << ' ' << type << '\n';
    name_ = name;
    samples();
  }
  void sample(const std::vector<Label>& ls, double v, const char* suffix = "") {
    out_ << name_ << suffix << labels(ls) << ' ' << value(v) << '\n';
  }
  void histogram(std::vector<Label> ls, const Histogram& h_ns) {
    // Cumulative counts at each bound, each log bucket placed by its middle.
    const std::vector<Histogram::Bucket> buckets = h_ns.buckets();
    size_t next = 0;
    uint64_t cumulative = 0;
    ls.push_back({"le", ""});
    for (double le : kPrometheusBuckets) {
      const double le_ns = le * 1e9;
      while (next < buckets.size()) {
        const Histogram::Bucket& b = buckets[next];
        const double mid = static_cast<double>(b.lo + (b.hi - b.lo) / 2);
        if (mid > le_ns) break;
        cumulative += b.count;
        ++next;
      }
      ls.back().value = value(le);
      sample(ls, static_cast<double>(cumulative), "_bucket");
    }
    ls.back().value = "+Inf";
    sample(ls, static_cast<double>(h_ns.count()), "_bucket");
    ls.pop_back();
    sample(ls, static_cast<double>(h_ns.total()) / 1e9, "_sum");
    sample(ls, static_cast<double>(h_ns.count()), "_count");
  }

 private:
  std::ostream& out_;
  const char* name_ = "";
};

}  // namespace

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

void render_prometheus(const Report& r, std::ostream& out) {
  Exposition e(out);
  const std::string pid = fmt::format("{}", r.pid);
  const auto gil_labels = [&](const GilReport& g) {
    return std::vector<Label>{{"pid", pid}, {"gil", fmt::format("{}", g.id)}};
  };
  const auto thread_labels = [&](const ThreadReport& t) {
    return std::vector<Label>{{"pid", pid},
                              {"gil", fmt::format("{}", t.gil)},
                              {"thread", t.name},
                              {"tid", fmt::format("{}", t.tid)}};
  };
  const auto per_gil = [&](const char* name, const char* type, const char* help,
                           const std::function<double(const GilReport&)>& f) {
    e.family(name, type, help, [&] {
      for (const GilReport& g : r.gils) e.sample(gil_labels(g), f(g));
    });
  };
  const auto per_thread = [&](const char* name, const char* type, const char* help,
                              const std::function<double(const ThreadReport&)>& f) {
    e.family(name, type, help, [&] {
      for (const ThreadReport& t : r.threads) e.sample(thread_labels(t), f(t));
    });
  };

  e.family("gilstat_recording_duration_seconds", "gauge", "Length of the measured window.", [&] {
    e.sample({{"pid", pid}}, r.duration_s);
  });
  e.family("gilstat_recording_truncated", "gauge",
           "1 when the recording was cut off and the figures cover only what was saved.", [&] {
             e.sample({{"pid", pid}}, r.recording.truncated ? 1 : 0);
           });
  e.family("gilstat_events_dropped_total", "counter",
           "Probe events lost (full ring or no free ring): the other figures undercount.", [&] {
             e.sample({{"pid", pid}}, static_cast<double>(r.drops));
           });

  per_gil("gilstat_gil_utilization_ratio", "gauge",
          "Share of the window the GIL was held (may exceed 1 on clock trouble).",
          [](const GilReport& g) { return g.utilization; });
  per_gil("gilstat_gil_acquisitions_total", "counter", "GIL acquisitions.",
          [](const GilReport& g) { return static_cast<double>(g.acquisitions); });
  per_gil("gilstat_gil_switches_total", "counter",
          "Acquisitions by a different thread state than the previous one.",
          [](const GilReport& g) { return static_cast<double>(g.switches); });
  per_gil("gilstat_gil_forced_switch_requests_total", "counter",
          "Times a waiting thread asked the holder to drop the GIL.",
          [](const GilReport& g) { return static_cast<double>(g.forced_switch_requests); });
  per_gil("gilstat_gil_forced_handoffs_total", "counter",
          "Releases where the holder waited until another thread took the GIL.",
          [](const GilReport& g) { return static_cast<double>(g.forced_handoffs); });
  per_gil("gilstat_gil_disabled_seconds", "gauge",
          "Free-threaded builds: time of the window the GIL was disabled (0 otherwise).",
          [](const GilReport& g) { return g.disabled_ns / 1e9; });
  const auto gil_hist = [&](const char* name, const char* help, Histogram GilReport::*h) {
    e.family(name, "histogram", help, [&] {
      for (const GilReport& g : r.gils) e.histogram(gil_labels(g), g.*h);
    });
  };
  gil_hist("gilstat_gil_wait_duration_seconds", "Time from wanting the GIL to acquiring it.",
           &GilReport::wait_hist);
  gil_hist("gilstat_gil_hold_duration_seconds", "Time from acquiring the GIL to releasing it.",
           &GilReport::hold_hist);
  gil_hist("gilstat_gil_handoff_duration_seconds",
           "Release by one thread to acquisition by another.", &GilReport::handoff_hist);
  gil_hist("gilstat_gil_drop_latency_seconds",
           "First forced-switch request during a hold to that hold's release.",
           &GilReport::drop_latency_hist);

  per_thread("gilstat_thread_held_seconds_total", "counter", "Time the thread held the GIL.",
             [](const ThreadReport& t) { return t.held_ns / 1e9; });
  per_thread("gilstat_thread_wait_seconds_total", "counter", "Time the thread waited for the GIL.",
             [](const ThreadReport& t) { return t.wait_total_ns / 1e9; });
  per_thread("gilstat_thread_released_seconds_total", "counter",
             "Time the thread ran without the GIL (or was idle).",
             [](const ThreadReport& t) { return t.released_ns / 1e9; });
  per_thread("gilstat_thread_acquisitions_total", "counter", "GIL acquisitions by the thread.",
             [](const ThreadReport& t) { return static_cast<double>(t.acquisitions); });
  per_thread("gilstat_thread_forced_handoffs_total", "counter", "Forced hand-offs by the thread.",
             [](const ThreadReport& t) { return static_cast<double>(t.forced_handoffs); });
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

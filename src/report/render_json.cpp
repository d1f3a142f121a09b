#include "report/render_json.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <iterator>

#include "report/findings.hpp"
#include "report/groups.hpp"
#include "report/render_hogs.hpp"
#include "report/render_profile.hpp"
#include "report/utf8.hpp"

namespace gilstat::report {

// Shortest round-trip form, always with a '.' or an exponent so that float
// fields stay floats for typed readers ("1.0", not "1").  JSON has no NaN or
// infinity; null says "no meaningful value".
std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  std::string s = fmt::format("{}", v);
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

namespace {

using Buf = fmt::memory_buffer;

std::string number(double v) { return json_number(v); }

void put_stats(Buf& b, const char* key, const DurationStats& s) {
  fmt::format_to(
      std::back_inserter(b),
      R"("{}": {{"p50": {}, "p90": {}, "p99": {}, "max": {}, "total": {}, "count": {}}})", key,
      s.p50, s.p90, s.p99, s.max, s.total, s.count);
}

void put_gil(Buf& b, const GilReport& g) {
  auto it = std::back_inserter(b);
  fmt::format_to(it, R"({{"id": {}, "address": "{:#x}", "interpreters": [{}], )", g.id, g.address,
                 fmt::join(g.interpreters, ", "));
  fmt::format_to(it, R"("utilization": {}, "mean_waiting_threads": {}, )", number(g.utilization),
                 number(g.mean_waiting_threads));
  fmt::format_to(it, R"("acquisitions": {}, "switches": {}, )", g.acquisitions, g.switches);
  fmt::format_to(it, R"("switch_number_delta": {}, "forced_switch_requests": {}, )",
                 g.switch_number_delta, g.forced_switch_requests);
  fmt::format_to(it, R"("forced_handoffs": {}, "seq_gaps": {}, "seq_stale": {}, "anomalies": {}, )",
                 g.forced_handoffs, g.seq_gaps, g.seq_stale, g.anomalies);
  fmt::format_to(
      it, R"("holder_tid": {}, "holder_for_s": {}, "holder_since_attach": {}, "waiting_now": {}, )",
      g.holder_tid, number(g.holder_for_ns / 1e9), g.holder_since_attach, g.waiting_now);
  put_stats(b, "wait_ns", g.wait_ns);
  fmt::format_to(it, ", ");
  put_stats(b, "hold_ns", g.hold_ns);
  fmt::format_to(it, ", ");
  put_stats(b, "handoff_ns", g.handoff_ns);
  fmt::format_to(it, ", ");
  put_stats(b, "drop_latency_ns", g.drop_latency_ns);
  fmt::format_to(it, R"(, "switch_number_known": {}, "disabled_s": {}, "enabled_changes": [)",
                 g.switch_number_known, number(g.disabled_ns / 1e9));
  for (size_t i = 0; i < g.enabled_changes.size(); ++i)
    fmt::format_to(it, R"({}{{"t_s": {}, "enabled": {}}})", i ? ", " : "",
                   number(g.enabled_changes[i].at_ns / 1e9), g.enabled_changes[i].enabled);
  fmt::format_to(it, R"(], "enabled_changes_lost": {}}})", g.enabled_changes_lost);
}

// host_tid: the thread as the host sees it; the tid itself when the target
// shares gilstat's PID namespace, null when it ended before it was looked up.
void put_thread(Buf& b, const ThreadReport& t, bool namespaced) {
  auto it = std::back_inserter(b);
  const std::string host_tid = !namespaced  ? std::to_string(t.tid)
                               : t.host_tid ? std::to_string(t.host_tid)
                                            : "null";
  fmt::format_to(it,
                 R"({{"tid": {}, "host_tid": {}, "name": {}, "group": {}, "own": {}, "gil": {}, )",
                 t.tid, host_tid, json_string(t.name), json_string(group_key(t)), t.own, t.gil);
  fmt::format_to(it, R"("lifetime_s": {}, "held_s": {}, "wait_s": {}, "released_s": {}, )",
                 number(t.lifetime_ns / 1e9), number(t.held_ns / 1e9),
                 number(t.wait_total_ns / 1e9), number(t.released_ns / 1e9));
  fmt::format_to(it, R"("acquisitions": {}, "forced_handoffs": {}, "drops": {}, "anomalies": {}, )",
                 t.acquisitions, t.forced_handoffs, t.drops, t.anomalies);
  fmt::format_to(it, R"("at_attach": {}, )",
                 t.at_attach.empty() ? "null" : json_string(t.at_attach));
  put_stats(b, "wait_ns", t.wait_ns);
  fmt::format_to(it, ", ");
  put_stats(b, "hold_ns", t.hold_ns);
  fmt::format_to(it, ", ");
  put_stats(b, "drop_latency_ns", t.drop_latency_ns);
  fmt::format_to(it, "}}");
}

void put_group(Buf& b, const GroupReport& g) {
  auto it = std::back_inserter(b);
  fmt::format_to(
      it, R"({{"key": {}, "gil": {}, "own": {}, "folded": {}, "size": {}, "tids": [{}], )",
      json_string(g.key), g.gil, g.own, g.folded, g.tids.size(), fmt::join(g.tids, ", "));
  fmt::format_to(it, R"("lifetime_s": {}, "held_s": {}, "wait_s": {}, "released_s": {}, )",
                 number(g.lifetime_ns / 1e9), number(g.held_ns / 1e9),
                 number(g.wait_total_ns / 1e9), number(g.released_ns / 1e9));
  fmt::format_to(it, R"("acquisitions": {}, "forced_handoffs": {}, "drops": {}, "anomalies": {}, )",
                 g.acquisitions, g.forced_handoffs, g.drops, g.anomalies);
  fmt::format_to(it, R"("member_held_s": {{"p50": {}, "p99": {}, "max": {}}}, )",
                 number(g.member_held_p50_ns / 1e9), number(g.member_held_p99_ns / 1e9),
                 number(g.member_held_max_ns / 1e9));
  put_stats(b, "wait_ns", g.wait_ns);
  fmt::format_to(it, ", ");
  put_stats(b, "hold_ns", g.hold_ns);
  fmt::format_to(it, R"(, "drop_requests": {}, "drop_latency_max_ns": {}}})", g.drop_latency_count,
                 g.drop_latency_max_ns);
}

void put_recording(Buf& b, const Report& r) {
  auto it = std::back_inserter(b);
  const RecordingStatus& s = r.recording;
  fmt::format_to(it,
                 R"("recording": {{"from_file": {}, "format_version": {}, "host": {}, )"
                 R"("start_unix_s": {}, "truncated": {}, "calibrated": {}, )"
                 R"("corrupt_chunks": {}, "skipped_bytes": {}, "problems": [)",
                 s.from_file, s.format_version, json_string(s.host),
                 number(static_cast<double>(s.start_unix_ns) / 1e9), s.truncated, s.calibrated,
                 s.corrupt_chunks, s.skipped_bytes);
  for (size_t i = 0; i < s.problems.size(); ++i)
    fmt::format_to(it, "{}{}", i ? ", " : "", json_string(s.problems[i]));
  fmt::format_to(it, "]}},\n");
  fmt::format_to(it, R"("window": {{"partial": {}, "since_s": {}, "until_s": {}}},)",
                 r.window.partial, number(r.window.since_s), number(r.window.until_s));
  fmt::format_to(it, "\n");
}

void put_findings(Buf& b, const Report& r) {
  auto it = std::back_inserter(b);
  fmt::format_to(it, "\"findings\": [");
  const std::vector<Finding> findings = find_findings(r);
  for (size_t i = 0; i < findings.size(); ++i)
    fmt::format_to(it, R"({}{{"id": "{}", "severity": "{}", "text": {}}})", i ? ",\n  " : "\n  ",
                   findings[i].id, findings[i].severity, json_string(findings[i].text));
  fmt::format_to(it, "],\n");
}

}  // namespace

std::string json_string(std::string_view bytes) {
  std::string out = "\"";
  for (size_t i = 0; i < bytes.size();) {
    char32_t cp;
    i += utf8_decode(bytes, i, cp);
    switch (cp) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (cp < 0x20 || cp == 0x7F) {
          out += fmt::format("\\u{:04x}", static_cast<unsigned>(cp));
        } else {
          utf8_append(out, cp);
        }
    }
  }
  out += '"';
  return out;
}

void render_json(const Report& r, std::ostream& out) {
  Buf b;
  auto it = std::back_inserter(b);
  fmt::format_to(it,
                 R"({{"gilstat_version": {}, "pid": {}, "host_pid": {}, "command": {}, )"
                 R"("duration_s": {}, )",
                 json_string(r.gilstat_version), r.pid, r.host_pid ? r.host_pid : r.pid,
                 json_string(r.command), number(r.duration_s));
  fmt::format_to(it, R"("clock": "{}", "ns_per_tick": {}, )",
                 r.clock == proto::ClockKind::Tsc ? "tsc" : "monotonic", number(r.ns_per_tick));
  fmt::format_to(
      it,
      R"("python": {{"version": {}, "version_hex": {}, "free_threaded": {}, "libpython": "{}"}}, )",
      json_string(r.python_version), r.py_version_hex, r.free_threaded,
      r.libpython_shared ? "shared" : "static");
  fmt::format_to(it, R"("drops": {}, "drops_no_ring": {}, "untracked_events": {}, )", r.drops,
                 r.drops_no_ring, r.untracked_events);
  fmt::format_to(it, R"("totals_exact": {}, )", r.totals_exact);
  put_recording(b, r);
  put_findings(b, r);
  fmt::format_to(it, "\"gils\": [");
  for (size_t i = 0; i < r.gils.size(); ++i) {
    fmt::format_to(it, "{}\n  ", i ? "," : "");
    put_gil(b, r.gils[i]);
  }
  fmt::format_to(it, "],\n\"threads\": [");
  for (size_t i = 0; i < r.threads.size(); ++i) {
    fmt::format_to(it, "{}\n  ", i ? "," : "");
    put_thread(b, r.threads[i], r.host_pid != 0);
  }
  fmt::format_to(it, "],\n\"groups\": [");
  for (size_t i = 0; i < r.groups.size(); ++i) {
    fmt::format_to(it, "{}\n  ", i ? "," : "");
    put_group(b, r.groups[i]);
  }
  fmt::format_to(it, "],\n\"modules\": {},\n\"gil_profile\": {},\n\"hogs\": {}}}\n",
                 modules_json(r.modules), profile_json(r), hogs_json(r));
  out.write(b.data(), static_cast<std::streamsize>(b.size()));
}

}  // namespace gilstat::report

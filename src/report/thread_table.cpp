#include "report/thread_table.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "report/fit_name.hpp"
#include "report/host_ids.hpp"
#include "report/render_text.hpp"
#include "report/utf8.hpp"

namespace gilstat::report {
namespace {

std::string percent(double part, double whole) {
  return whole > 0 ? fmt::format("{:.1f}", 100.0 * part / whole) : "-";
}

std::string seconds(double ns) { return fmt::format("{:.3f}", ns / 1e9); }

std::string duration_or_dash(uint64_t count, uint64_t ns) {
  return count ? format_duration(ns) : "-";
}

// The columns after THREAD: title, width.
struct Column {
  const char* title;
  size_t width;
};
constexpr Column kTid{"TID", 8};
// A target in another PID namespace: TID is the host's, this the target's own.
constexpr Column kNsTid{"NS TID", 8};
constexpr Column kGil{"GIL", 4};
constexpr Column kRest[] = {{"HELD%", 7}, {"WAIT%", 7},     {"HELD s", 10},   {"WAIT s", 10},
                            {"ACQ", 10},  {"WAIT p99", 10}, {"HOLD max", 10}, {"WAIT%LIFE", 11}};
constexpr size_t kRestCount = std::size(kRest);

struct Line {
  std::string name;  // sanitised, not yet fitted
  std::string tid;
  uint32_t gil = 0;
  std::string rest[kRestCount];
  std::string note;  // a second line (a folded group's members' held times)
  std::string ns_tid = {};  // only shown for a namespaced target
};

Line line_of(const GroupReport& s, std::string name, std::string tid, double window_ns) {
  return {
      std::move(name),
      std::move(tid),
      s.gil,
      {percent(s.held_ns, window_ns), percent(s.wait_total_ns, window_ns), seconds(s.held_ns),
       seconds(s.wait_total_ns), format_count(s.acquisitions),
       duration_or_dash(s.wait_ns.count, s.wait_ns.p99),
       duration_or_dash(s.hold_ns.count, s.hold_ns.max), percent(s.wait_total_ns, s.lifetime_ns)},
      {}};
}

// A thread as a member row under its folded group.
Line member_line(const Report& r, const ThreadReport& t, double window_ns) {
  GroupReport one;
  one.gil = t.gil;
  one.held_ns = t.held_ns;
  one.wait_total_ns = t.wait_total_ns;
  one.lifetime_ns = t.lifetime_ns;
  one.acquisitions = t.acquisitions;
  one.wait_ns = t.wait_ns;
  one.hold_ns = t.hold_ns;
  Line l = line_of(one, "  " + printable(t.name), shown_tid(r, t), window_ns);
  l.ns_tid = std::to_string(t.tid);
  return l;
}

std::vector<Line> lines_of(const Report& r, const std::vector<TableRow>& rows, size_t shown,
                           bool members, double window_ns) {
  std::vector<Line> out;
  for (size_t i = 0; i < shown && i < rows.size(); ++i) {
    const TableRow& row = rows[i];
    if (!row.folded()) {
      out.push_back(line_of(row.sums, printable(row_label(row)), shown_tid(r, row.thread()),
                            window_ns));
      out.back().ns_tid = std::to_string(row.thread().tid);
      continue;
    }
    Line l = line_of(row.sums, printable(row_label(row)), "-", window_ns);
    l.ns_tid = "-";
    l.note = fmt::format("  per thread held: p50 {} · p99 {} · max {}",
                         format_duration(saturating_ns(row.sums.member_held_p50_ns)),
                         format_duration(saturating_ns(row.sums.member_held_p99_ns)),
                         format_duration(saturating_ns(row.sums.member_held_max_ns)));
    out.push_back(std::move(l));
    if (members)
      for (const ThreadReport* t : row.members) out.push_back(member_line(r, *t, window_ns));
  }
  return out;
}

}  // namespace

size_t thread_table_lines(const std::vector<TableRow>& rows, size_t shown, bool members) {
  shown = std::min(shown, rows.size());
  size_t n = 1 + shown + (shown < rows.size() ? 1 : 0);
  for (size_t i = 0; i < shown; ++i)
    if (rows[i].folded()) n += 1 + (members ? rows[i].members.size() : 0);
  return n;
}

std::vector<std::string> thread_table(const Report& r, const std::vector<TableRow>& rows,
                                      const TableLayout& layout) {
  const double window_ns = r.duration_s * 1e9;
  const bool multi_gil = r.gils.size() > 1;
  const size_t shown = std::min(layout.rows, rows.size());
  const bool namespaced = r.host_pid != 0;
  const std::vector<Line> lines = lines_of(r, rows, shown, layout.members, window_ns);

  // THREAD is as wide as the longest name; on a terminal narrower than the
  // table, as narrow as the names' distinguishing parts allow.
  size_t natural = 6, least = 6;
  for (const Line& l : lines) {
    natural = std::max(natural, text_columns(l.name));
    least = std::max(least, min_name_width(l.name));
  }
  size_t name_width = natural;
  if (layout.width > 0) {
    size_t others = kTid.width + (namespaced ? kNsTid.width : 0) + (multi_gil ? kGil.width : 0) + 1;
    for (const Column& c : kRest) others += c.width;
    name_width =
        std::max(least, std::min(natural, layout.width > others ? layout.width - others : 0));
  }

  const auto format = [&](const std::string& name, const std::string& tid,
                          const std::string& ns_tid, const std::string& gil,
                          const std::string(&rest)[kRestCount]) {
    std::string s =
        pad(fit_name(name, name_width), name_width, false) + " " + pad(tid, kTid.width, true);
    if (namespaced) s += pad(ns_tid, kNsTid.width, true);
    if (multi_gil) s += pad(gil, kGil.width, true);
    for (size_t i = 0; i < kRestCount; ++i) s += pad(rest[i], kRest[i].width, true);
    return s;
  };
  std::vector<std::string> out;
  std::string titles[kRestCount];
  for (size_t i = 0; i < kRestCount; ++i) titles[i] = kRest[i].title;
  out.push_back(format("THREAD", kTid.title, kNsTid.title, kGil.title, titles));
  for (const Line& l : lines) {
    out.push_back(format(l.name, l.tid, l.ns_tid, fmt::format("{}", l.gil), l.rest));
    if (!l.note.empty()) out.push_back(l.note);
  }
  if (shown < rows.size()) {
    size_t threads = 0;
    for (size_t i = shown; i < rows.size(); ++i) threads += rows[i].members.size();
    const size_t hidden_rows = rows.size() - shown;
    out.push_back(fmt::format(
        "… {} more threads{} (--max-threads all lists every thread)", format_count(threads),
        hidden_rows == threads ? "" : fmt::format(" in {} rows", format_count(hidden_rows))));
  }
  return out;
}

}  // namespace gilstat::report

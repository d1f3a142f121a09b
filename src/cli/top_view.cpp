#include "cli/top_view.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <tuple>

#include "cli/top_modules.hpp"
#include "report/fit_name.hpp"
#include "report/groups.hpp"
#include "report/host_ids.hpp"
#include "report/render_text.hpp"
#include "report/stuck_hint.hpp"
#include "report/utf8.hpp"

namespace gilstat::cli {

bool parse_top_sort(const std::string& text, TopSort& out) {
  if (text == "held")
    out = TopSort::Held;
  else if (text == "wait")
    out = TopSort::Wait;
  else if (text == "acq")
    out = TopSort::Acquisitions;
  else
    return false;
  return true;
}

const char* top_sort_name(TopSort sort) {
  switch (sort) {
    case TopSort::Wait:
      return "wait";
    case TopSort::Acquisitions:
      return "acq";
    case TopSort::Held:
      break;
  }
  return "held";
}

std::vector<ThreadDelta> thread_deltas(const report::Report& prev, const report::Report& now) {
  auto key = [](const report::ThreadReport& t) { return uint64_t{t.tid} << 8 | t.gil; };
  std::unordered_map<uint64_t, const report::ThreadReport*> before;
  for (const auto& t : prev.threads) before[key(t)] = &t;
  std::vector<ThreadDelta> out;
  out.reserve(now.threads.size());
  for (const auto& t : now.threads) {
    const auto it = before.find(key(t));
    const report::ThreadReport* p = it == before.end() ? nullptr : it->second;
    out.push_back({&t, t.held_ns - (p ? p->held_ns : 0),
                   t.wait_total_ns - (p ? p->wait_total_ns : 0),
                   t.acquisitions - (p ? p->acquisitions : 0)});
  }
  return out;
}

// A GIL's held time since attach: its utilisation is the exact figure (the
// probe's totals, holds still running and holds since before the attach
// included), the hold histogram only counts holds seen to complete.
double held_since_attach_ns(const report::Report& r, const report::GilReport& g) {
  return g.utilization * r.duration_s * 1e9;
}

std::vector<GilDelta> gil_deltas(const report::Report& prev, const report::Report& now) {
  std::vector<GilDelta> out;
  for (const auto& g : now.gils) {
    const report::GilReport* p = nullptr;
    for (const auto& q : prev.gils)
      if (q.id == g.id) p = &q;
    out.push_back({&g, held_since_attach_ns(now, g) - (p ? held_since_attach_ns(prev, *p) : 0),
                   g.acquisitions - (p ? p->acquisitions : 0), g.switches - (p ? p->switches : 0),
                   g.forced_switch_requests - (p ? p->forced_switch_requests : 0)});
  }
  return out;
}

// ---- the view

namespace {

constexpr size_t kTopModuleRows = 3;  // the busiest modules of the interval

double pct(double part, double whole) { return whole > 0 ? 100.0 * part / whole : 0.0; }

// A share with one decimal.  Rounding noise below zero (two snapshots
// convert the same ticks with slightly different TSC calibrations) reads
// 0.0, not -0.0; a real negative stays visible.
std::string share(double percent) {
  return fmt::format("{:.1f}", percent < 0 && percent > -0.05 ? 0.0 : percent);
}

std::string thousands(uint64_t n) {
  std::string digits = std::to_string(n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string pad_left(const std::string& s, size_t width) {
  const size_t w = report::text_columns(s);
  return w >= width ? s : std::string(width - w, ' ') + s;
}

std::string pad_right(const std::string& s, size_t width) {
  const size_t w = report::text_columns(s);
  return w >= width ? s : s + std::string(width - w, ' ');
}

struct Row {
  std::string label;    // sanitised name, group key or "exited"
  size_t count = 1;     // threads folded into the row
  bool folded = false;  // a group or the exited row: the label gets " ×count"
  bool exited_row = false;
  std::string tid = "-";
  uint32_t gil = 0;
  double held_ns = 0, wait_ns = 0;
  uint64_t acquisitions = 0;
  std::vector<const report::ThreadReport*> members;  // since attach, for the Σ columns

  std::string title() const { return folded ? label + " ×" + thousands(count) : label; }
  void add(const ThreadDelta& d) {
    held_ns += d.held_ns;
    wait_ns += d.wait_ns;
    acquisitions += d.acquisitions;
    members.push_back(d.now);
  }
};

double sort_value(const Row& r, TopSort by) {
  switch (by) {
    case TopSort::Wait:
      return r.wait_ns;
    case TopSort::Acquisitions:
      return static_cast<double>(r.acquisitions);
    case TopSort::Held:
      break;
  }
  return r.held_ns;
}

// Nothing happened to the thread in the interval.  With a TSC clock each
// snapshot converts the same ticks with its own calibration, so the
// cumulative times of a thread that did nothing still move a little.
bool idle(const ThreadDelta& d) {
  auto noise = [](double delta, double total) {
    return std::abs(delta) <= 1e-3 * std::abs(total) + 1000.0;
  };
  return d.acquisitions == 0 && noise(d.held_ns, d.now->held_ns) &&
         noise(d.wait_ns, d.now->wait_total_ns);
}

}  // namespace

ThreadFate fate_of(const ThreadDelta& d, const std::unordered_map<uint32_t, ThreadFate>& fates) {
  const auto f = fates.find(d.now->tid);
  return f == fates.end() ? ThreadFate::Alive : f->second;
}

bool shown_in_interval(const ThreadDelta& d,
                       const std::unordered_map<uint32_t, ThreadFate>& fates) {
  return !(fate_of(d, fates) == ThreadFate::ExitedBefore && idle(d));
}

namespace {

// The rows of the interval: threads (or their groups), and per GIL one row
// for the threads that exited in the interval outside a group row.
std::vector<Row> build_rows(const TopInterval& in, const std::vector<ThreadDelta>& deltas,
                            bool groups, std::map<uint32_t, Row>& exited) {
  std::vector<const ThreadDelta*> shown;
  std::vector<bool> gone;
  for (const ThreadDelta& d : deltas) {
    if (!shown_in_interval(d, in.fates)) continue;
    shown.push_back(&d);
    gone.push_back(fate_of(d, in.fates) != ThreadFate::Alive);
  }
  std::vector<Row> rows;
  auto single = [&](size_t i) {
    const ThreadDelta& d = *shown[i];
    if (gone[i]) {
      Row& e = exited[d.now->gil];
      e.label = "exited";
      e.folded = e.exited_row = true;
      e.gil = d.now->gil;
      e.add(d);
      e.count = e.members.size();
      return;
    }
    Row r;
    r.label = report::printable(d.now->name);
    r.tid = report::shown_tid(*in.now, *d.now);
    r.gil = d.now->gil;
    r.add(d);
    rows.push_back(std::move(r));
  };
  if (!groups) {
    for (size_t i = 0; i < shown.size(); ++i) single(i);
    return rows;
  }
  std::map<std::tuple<bool, std::string, uint32_t>, std::vector<size_t>> by_group;
  for (size_t i = 0; i < shown.size(); ++i) {
    const auto& t = *shown[i]->now;
    by_group[{t.own, t.own ? std::string("gilstat") : report::group_key(t.name), t.gil}].push_back(
        i);
  }
  for (const auto& [key, members] : by_group) {
    if (members.size() < report::kMinGroupSize) {
      for (size_t i : members) single(i);
      continue;
    }
    Row g;
    g.label = report::printable(std::get<1>(key));
    g.folded = true;
    g.count = members.size();
    g.gil = std::get<2>(key);
    for (size_t i : members) g.add(*shown[i]);
    rows.push_back(std::move(g));
  }
  return rows;
}

// Since-attach latency columns of a row: its members' distributions merged.
std::pair<std::string, std::string> since_attach(const Row& r) {
  if (r.exited_row || r.members.empty()) return {"-", "-"};
  if (r.members.size() == 1)
    return {report::format_duration(r.members[0]->wait_ns.p99),
            report::format_duration(r.members[0]->hold_ns.max)};
  report::Histogram waits;
  uint64_t hold_max = 0;
  for (const auto* m : r.members) {
    waits.merge(m->wait_hist);
    hold_max = std::max(hold_max, m->hold_ns.max);
  }
  return {report::format_duration(waits.percentile(0.99)), report::format_duration(hold_max)};
}

std::string holder_text(const report::Report& now, const report::GilReport& g) {
  if (g.holder_tid == 0) return g.acquisitions ? "free" : "holder not seen yet";
  std::string name = fmt::format("native-{}", g.holder_tid);
  for (const auto& t : now.threads)
    if (t.tid == g.holder_tid && t.gil == g.id) name = report::printable(t.name);
  return fmt::format("held by {} for {}{}", name,
                     report::format_duration(report::saturating_ns(g.holder_for_ns)),
                     g.holder_since_attach ? " (since before attach)" : "");
}

// A GIL's header: what must stay visible first, then what fits of the rest.
std::vector<std::string> gil_header(const TopInterval& in, const GilDelta& g,
                                    const std::vector<ThreadDelta>& deltas, size_t width) {
  const double interval_ns = in.interval_s * 1e9;
  double waits = 0;
  for (const ThreadDelta& d : deltas)
    if (d.now->gil == g.now->id && !d.now->own) waits += d.wait_ns;
  std::vector<std::string> parts = {
      fmt::format("GIL {}  util {:5.1f} %", g.now->id, pct(g.hold_ns, interval_ns)),
      fmt::format("switches/s {:6.0f}", in.interval_s > 0 ? g.switches / in.interval_s : 0.0),
      fmt::format("waiters {:.2f}", interval_ns > 0 ? waits / interval_ns : 0.0),
      holder_text(*in.now, *g.now)};
  std::string line = parts[0];
  for (size_t i = 1; i < parts.size(); ++i) line += "  " + parts[i];
  const std::vector<std::string> extra = {
      fmt::format("(since attach {:.1f} %)", 100.0 * g.now->utilization),
      fmt::format("forced-switch req/s {:.0f}",
                  in.interval_s > 0 ? g.requests / in.interval_s : 0.0),
      fmt::format("hand-off p50 {} p99 {}", report::format_duration(g.now->handoff_ns.p50),
                  report::format_duration(g.now->handoff_ns.p99))};
  for (const auto& e : extra) {
    if (width && report::text_columns(line) + 2 + report::text_columns(e) > width) break;
    line += "  " + e;
  }
  std::vector<std::string> lines = {line};
  if (auto hint = report::stuck_hint(*in.now, *g.now)) lines.push_back("  " + *hint);
  // Free-threaded builds: zero rates are no news while the GIL is off.
  if (!g.now->enabled_changes.empty() && g.now->enabled_changes.back().enabled == 0)
    lines.push_back(fmt::format("  GIL {} is disabled (free-threaded build)", g.now->id));
  return lines;
}

struct Column {
  const char* title;
  size_t width;
};

}  // namespace

std::vector<std::string> render_top(const TopInterval& in, const TopViewOptions& opt) {
  const report::Report& now = *in.now;
  const double interval_ns = in.interval_s * 1e9;
  const auto deltas = thread_deltas(*in.prev, now);
  const auto gils = gil_deltas(*in.prev, now);

  std::vector<std::string> head = {fmt::format(
      "gilstat top · pid {} · drops {} · Python {} · {:.1f} s since attach · interval {:.2f} s",
      now.host_pid ? fmt::format("{} (pid {} in its PID namespace)", now.host_pid, now.pid)
                   : std::to_string(now.pid),
      now.drops, report::printable(now.python_version), now.duration_s, in.interval_s)};
  for (const auto& g : gils)
    for (auto& l : gil_header(in, g, deltas, opt.width)) head.push_back(std::move(l));
  head.push_back("");

  std::map<uint32_t, Row> exited_by_gil;
  std::vector<Row> rows = build_rows(in, deltas, opt.groups, exited_by_gil);
  std::stable_sort(rows.begin(), rows.end(), [&](const Row& a, const Row& b) {
    const double x = sort_value(a, opt.sort), y = sort_value(b, opt.sort);
    if (x != y) return x > y;
    return std::tie(a.label, a.gil, a.tid) < std::tie(b.label, b.gil, b.tid);
  });
  std::vector<Row> exited;
  for (auto& [gil, row] : exited_by_gil) exited.push_back(std::move(row));

  // How many rows fit: the header, the column titles, the exited rows, the
  // "… more" line and the key help stay; thread rows take the rest.
  const std::vector<std::string> modules =
      top_module_lines(*in.prev, *in.now, in.interval_s, kTopModuleRows);
  size_t fit = opt.max_threads ? std::min(rows.size(), opt.max_threads) : rows.size();
  const size_t base = head.size() + 1 + exited.size() + (opt.key_help ? 1 : 0);
  // Under the threads: the long holds and functions, then the modules, each
  // block whole (after a blank line) or not at all; the threads keep at
  // least a row and the "… more" line.
  std::vector<std::string> extra;
  size_t spare = !opt.height ? SIZE_MAX : opt.height > base + 2 ? opt.height - base - 2 : 0;
  for (const auto* block : {&in.stack_lines, &modules})
    if (!block->empty() && block->size() + 1 <= spare) {
      extra.push_back("");
      extra.insert(extra.end(), block->begin(), block->end());
      spare -= block->size() + 1;
    }
  if (opt.height) {
    const size_t fixed = base + extra.size();
    const size_t room = opt.height > fixed ? opt.height - fixed : 0;
    fit = std::min(fit, room);
    if (fit < rows.size() && fit + 1 > room) fit = room > 0 ? room - 1 : 0;
  }
  const bool cut = fit < rows.size();

  // Columns: names are cut only when the terminal is too narrow for them
  // even without the since-attach columns, and never to less than what
  // tells each shown row's group apart (without room, the rate goes too).
  const bool many_gils = gils.size() > 1;
  std::vector<Column> cols = {{"TID", 8},      {"GIL", many_gils ? 3u : 0u},
                              {"HELD%", 6},    {"WAIT%", 6},
                              {"ACQ/s", 8},    {"WAIT p99Σ", 9},
                              {"HOLD maxΣ", 9}};
  size_t natural = report::text_columns("THREAD"), needed = natural;
  for (size_t i = 0; i < fit; ++i) {
    natural = std::max(natural, report::text_columns(rows[i].title()));
    const size_t suffix =
        report::text_columns(rows[i].title()) - report::text_columns(rows[i].label);
    needed = std::max(needed, std::min<size_t>(report::min_name_width(rows[i].label) + suffix, 40));
  }
  for (const auto& e : exited) natural = std::max(natural, report::text_columns(e.title()));
  auto numbers_width = [&] {
    size_t w = 0;
    for (const auto& c : cols)
      if (c.width) w += c.width + 1;
    return w;
  };
  size_t name_w = natural;
  if (opt.width) {
    auto fits = [&](size_t name) { return opt.width >= name + numbers_width(); };
    for (size_t since : {6, 5})
      if (!fits(natural)) cols[since].width = 0;
    if (!fits(needed)) cols[4].width = 0;
    name_w = std::max(
        needed, std::min(natural, opt.width > numbers_width() ? opt.width - numbers_width() : 0));
  }

  auto line_for = [&](const Row& r) {
    std::string label = r.label;
    const size_t suffix = report::text_columns(r.title()) - report::text_columns(r.label);
    if (report::text_columns(r.title()) > name_w)
      label = report::fit_name(r.label, name_w > suffix ? name_w - suffix : 0);
    std::string name = r.folded ? label + " ×" + thousands(r.count) : label;
    const auto [p99, max] = since_attach(r);
    const std::vector<std::string> cells = {
        r.tid,
        std::to_string(r.gil),
        share(pct(r.held_ns, interval_ns)),
        share(pct(r.wait_ns, interval_ns)),
        fmt::format("{:.0f}", in.interval_s > 0 ? r.acquisitions / in.interval_s : 0.0),
        p99,
        max};
    std::string line = pad_right(name, name_w);
    for (size_t c = 0; c < cols.size(); ++c)
      if (cols[c].width) line += " " + pad_left(cells[c], cols[c].width);
    return line;
  };

  std::vector<std::string> lines = head;
  std::string titles = pad_right("THREAD", name_w);
  for (const auto& c : cols)
    if (c.width) titles += " " + pad_left(c.title, c.width);
  lines.push_back(titles);
  for (size_t i = 0; i < fit; ++i) lines.push_back(line_for(rows[i]));
  for (const auto& e : exited) lines.push_back(line_for(e));
  if (cut) {
    size_t threads = 0;
    double held = 0, wait = 0;
    for (size_t i = fit; i < rows.size(); ++i) {
      threads += rows[i].count;
      held += rows[i].held_ns;
      wait += rows[i].wait_ns;
    }
    lines.push_back(fmt::format("… {} more thread{} (held {:.1f} %, wait {:.1f} %)",
                                thousands(threads), threads == 1 ? "" : "s", pct(held, interval_ns),
                                pct(wait, interval_ns)));
  }
  lines.insert(lines.end(), extra.begin(), extra.end());
  if (opt.key_help)
    lines.push_back(
        fmt::format("sort: {} · groups {} · keys: h held, w wait, a acq, g groups, q quit",
                    top_sort_name(opt.sort), opt.groups ? "on" : "off"));
  if (opt.height && lines.size() > opt.height) lines.resize(opt.height);
  for (auto& l : lines) l = report::clip_columns(l, opt.width);
  return lines;
}

}  // namespace gilstat::cli

#include "report/render_text.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <iterator>
#include <sstream>
#include <string_view>

#include "report/findings.hpp"
#include "report/fit_name.hpp"
#include "report/render_hogs.hpp"
#include "report/render_profile.hpp"
#include "report/thread_table.hpp"
#include "report/utf8.hpp"

namespace gilstat::report {

namespace {

constexpr size_t kModuleRows = 10;  // rows of "GIL by module" in a short report

std::string clean(std::string_view s) { return printable(s); }

std::string cell(std::string_view s, size_t width, bool right = true) {
  return pad(clean(s), width, right);
}

std::string count(uint64_t n) { return format_count(n); }

// The first width-1 characters and "…" when s is longer (a command line).
std::string clip(std::string_view s, size_t width) {
  std::string out;
  size_t n = 0;
  for (size_t i = 0; i < s.size();) {
    const size_t start = i;
    char32_t cp;
    i += utf8_decode(s, i, cp);
    if (n + 1 == width && i < s.size()) return out + "…";
    out.append(s.substr(start, i - start));
    ++n;
  }
  return out;
}

std::string python_line(const Report& r) {
  std::string py = r.python_version.empty() ? "?" : clip(clean(r.python_version), 32);
  return fmt::format("Python {}{} ({} libpython)", py, r.free_threaded ? " free-threaded" : "",
                     r.libpython_shared ? "shared" : "static");
}

void render_header(const Report& r, std::ostream& out) {
  const std::string pid = r.host_pid
                              ? fmt::format("{} (pid {} in its PID namespace)", r.host_pid, r.pid)
                              : std::to_string(r.pid);
  out << fmt::format("gilstat {} · pid {}{}{}\n", clip(clean(r.gilstat_version), 32), pid,
                     r.command.empty() ? "" : " · ", clip(clean(r.command), 100));
  out << fmt::format("{} · clock {} · window {} · drops {}\n", python_line(r),
                     r.clock == proto::ClockKind::Tsc ? "tsc" : "monotonic",
                     format_duration(saturating_ns(r.duration_s * 1e9)), count(r.drops));
  if (r.window.partial)
    out << fmt::format("window {:.3f} s – {:.3f} s of the recording\n", r.window.since_s,
                       r.window.until_s);
  if (r.recording.truncated)
    out << "WARNING: the recording was cut off (no end record): figures cover what was "
           "saved.\n";
  if (r.recording.corrupt_chunks)
    out << fmt::format(
        "WARNING: {} damaged chunk(s) ({} bytes) skipped: their events are "
        "missing.\n",
        count(r.recording.corrupt_chunks), count(r.recording.skipped_bytes));
  if (r.drops > 0 && r.totals_exact && r.drops_no_ring == 0) {
    out << fmt::format(
        "NOTE: {} events were lost with a full ring: totals, acquisitions and switches below are "
        "exact (counted in the probe); percentiles, histograms and timelines miss those "
        "events.\n",
        count(r.drops));
  } else if (r.drops > 0) {
    out << fmt::format(
        "WARNING: {} events were lost ({} with a full ring, {} with no free ring): the numbers "
        "below undercount{}.\n",
        count(r.drops), count(r.drops - r.drops_no_ring), count(r.drops_no_ring),
        r.totals_exact ? " (threads with no ring only: the others' totals are exact)" : "");
  }
}

void render_switch_check(const GilReport& g, std::ostream& out) {
  if (!g.switch_number_known) {
    out << fmt::format("  acquisitions {}   switches {}\n", count(g.acquisitions),
                       count(g.switches));
    return;
  }
  const auto delta = g.switch_number_delta;
  if (delta >= 0 && g.switches == static_cast<uint64_t>(delta)) {
    out << fmt::format("  acquisitions {}   switches {} = switch_number Δ ✓\n",
                       count(g.acquisitions), count(g.switches));
    return;
  }
  out << fmt::format(
      "  acquisitions {}   switches {}, but switch_number Δ {}  MISMATCH: holder changes were "
      "missed or invented (lost events?)\n",
      count(g.acquisitions), count(g.switches), delta);
}

// Free-threaded builds whose GIL was off for part of the window: how long,
// and when it came on.  Utilization stays relative to the whole window.
void render_enabled(const GilReport& g, std::ostream& out) {
  if (g.enabled_changes.empty() || g.disabled_ns <= 0) return;
  const auto [spells, last_on_ns] = enabled_spells(g);
  const uint32_t prev = g.enabled_changes.back().enabled;
  const std::string off = format_duration(saturating_ns(g.disabled_ns));
  const auto plural = [](int n) { return n == 1 ? "" : "s"; };
  std::string when;
  if (prev == 0) {
    when = fmt::format(", apart from {} enabled spell{}", spells, plural(spells));
  } else {
    when = fmt::format("; enabled at {:.3f} s{}", last_on_ns / 1e9,
                       prev == kEnabledForGood ? " for good" : "");
    if (spells > 1)
      when += fmt::format(" (after {} brief spell{})", spells - 1, plural(spells - 1));
  }
  if (g.enabled_changes_lost)
    when += fmt::format(" ({} later changes not kept: the disabled time is approximate)",
                        g.enabled_changes_lost);
  out << fmt::format("  GIL disabled for {} of the window (free-threaded build){}\n", off, when);
}

// Display clamps to [0, 100] %; a raw value outside is a measurement error
// and is printed beside it, never hidden.
std::string utilization_text(const GilReport& g) {
  std::string util = fmt::format("{:.1f} %", 100.0 * std::clamp(g.utilization, 0.0, 1.0));
  if (g.utilization > 1.0 || g.utilization < 0.0)
    util +=
        fmt::format(" (raw {:.3f}: hold time exceeds the window, check the clock)", g.utilization);
  return util;
}

// One line for a GIL that a short report has no room to show in full; what
// would be a warning in full is still said.
std::string compact_gil(const GilReport& g) {
  std::string s = fmt::format("GIL {}  utilization {}  acquisitions {}  switches {}", g.id,
                              utilization_text(g), count(g.acquisitions), count(g.switches));
  if (g.switch_number_known) {
    s += g.switch_number_delta >= 0 && g.switches == static_cast<uint64_t>(g.switch_number_delta)
             ? " = switch_number Δ ✓"
             : fmt::format(", but switch_number Δ {}  MISMATCH", g.switch_number_delta);
  }
  if (g.seq_gaps || g.seq_stale || g.anomalies)
    s += fmt::format("  WARNING: {} missing, {} late, {} anomalies", count(g.seq_gaps),
                     count(g.seq_stale), count(g.anomalies));
  if (g.disabled_ns > 0)
    s += fmt::format("  disabled {}", format_duration(saturating_ns(g.disabled_ns)));
  return s;
}

void render_gil(const GilReport& g, bool totals_exact, std::ostream& out) {
  std::string interps;
  if (!g.interpreters.empty())
    interps = fmt::format("  interpreters {}", fmt::join(g.interpreters, ","));
  out << fmt::format("\nGIL {}{}  utilization {}\n", g.id, interps, utilization_text(g));
  render_enabled(g, out);
  render_switch_check(g, out);
  out << fmt::format("  forced-switch requests {}   forced hand-offs {}\n",
                     count(g.forced_switch_requests), count(g.forced_handoffs));
  if (g.seq_gaps || g.seq_stale || g.anomalies) {
    out << fmt::format(
        "  WARNING: {} events missing from the GIL's sequence, {} late, {} anomalies: {}\n",
        count(g.seq_gaps), count(g.seq_stale), count(g.anomalies),
        totals_exact ? "hand-offs and the percentiles below miss them (the counts above and the "
                       "utilization are exact)"
                     : "GIL-level figures are incomplete");
  }
  out << fmt::format("  {}{}{}{}{}{}\n", cell("", 9, false), cell("p50", 10), cell("p90", 10),
                     cell("p99", 10), cell("max", 10), cell("count", 12));
  const auto row = [&](std::string_view label, const DurationStats& s) {
    if (s.count == 0) {
      out << fmt::format("  {}{}\n", cell(label, 9, false), cell("-", 10));
      return;
    }
    out << fmt::format("  {}{}{}{}{}{}\n", cell(label, 9, false), cell(format_duration(s.p50), 10),
                       cell(format_duration(s.p90), 10), cell(format_duration(s.p99), 10),
                       cell(format_duration(s.max), 10), cell(count(s.count), 12));
  };
  row("wait", g.wait_ns);
  row("hold", g.hold_ns);
  row("hand-off", g.handoff_ns);
  // Only when some thread was asked to drop: request -> release.
  if (g.drop_latency_ns.count) row("req→drop", g.drop_latency_ns);
}

// Words of `text` in lines of at most `width` columns; the first line
// starts with `first`, the others with `indent`.
std::string wrap(std::string_view text, std::string_view first, std::string_view indent,
                 size_t width) {
  std::string out(first);
  size_t used = text_columns(first);
  bool line_empty = true;
  for (size_t start = 0; start < text.size();) {
    size_t end = text.find(' ', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view word = text.substr(start, end - start);
    start = end + 1;
    if (word.empty()) continue;
    if (!line_empty && used + 1 + text_columns(word) > width) {
      out += '\n';
      out += indent;
      used = text_columns(indent);
      line_empty = true;
    }
    if (!line_empty) {
      out += ' ';
      ++used;
    }
    out += word;
    used += text_columns(word);
    line_empty = false;
  }
  return out + '\n';
}

// Bars of 1/8 character steps.
std::string bar(uint64_t n, uint64_t max, size_t width) {
  if (!n || !max) return {};
  const uint64_t eighths =
      std::max<uint64_t>(1, static_cast<uint64_t>(static_cast<long double>(n) * width * 8 / max));
  static constexpr const char* kParts[] = {"", "▏", "▎", "▍", "▌", "▋", "▊", "▉"};
  std::string out;
  for (uint64_t i = 0; i < eighths / 8; ++i) out += "█";
  out += kParts[eighths % 8];
  return out;
}

using Lines = std::vector<std::string>;

// What `render` writes, as lines without their '\n'.
template <typename Render>
Lines lines_of(Render&& render) {
  std::ostringstream text;
  render(text);
  Lines lines;
  const std::string s = text.str();
  for (size_t start = 0; start < s.size();) {
    size_t end = s.find('\n', start);
    if (end == std::string::npos) end = s.size();
    lines.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

void append(Lines& to, const Lines& from) { to.insert(to.end(), from.begin(), from.end()); }

// In a short report, at most this many lines of GIL blocks (up to 16 GILs:
// the busiest in full, the others one line each) and of findings.
constexpr size_t kGilLines = 45;
constexpr size_t kFindingLines = 40;
// Functions in the short report's held-time profile (plus 3 per top group).
constexpr size_t kProfileEntries = 10;
// Long-hold stacks in the short report, and frames of each.
constexpr size_t kHogEntries = 5;
constexpr size_t kHogFrames = 8;
// Thread rows a short report keeps before it drops histograms.
constexpr size_t kFirstRows = 10;

Lines gil_section(const Report& r, size_t limit) {
  std::vector<Lines> blocks;
  size_t total = 0;
  for (const GilReport& g : r.gils) {
    blocks.push_back(lines_of([&](std::ostream& o) { render_gil(g, r.totals_exact, o); }));
    total += blocks.back().size();
  }
  std::vector<bool> full(r.gils.size(), true);
  if (limit > 0 && total > limit) {
    // Every GIL as one line first (with a heading), then the busiest in full.
    std::vector<size_t> order(r.gils.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return r.gils[a].utilization > r.gils[b].utilization;
    });
    size_t used = 2 + r.gils.size();
    full.assign(r.gils.size(), false);
    for (size_t i : order) {
      if (used - 1 + blocks[i].size() > limit) continue;
      full[i] = true;
      used += blocks[i].size() - 1;
    }
  }
  Lines out;
  for (size_t i = 0; i < blocks.size(); ++i)
    if (full[i]) append(out, blocks[i]);
  if (std::find(full.begin(), full.end(), false) != full.end()) {
    out.push_back("");
    out.push_back("Other GILs, one line each (--max-threads all shows them in full):");
    // More GILs than lines (a damaged recording can name 256): the first
    // ones, and how many more.
    const size_t others = static_cast<size_t>(std::count(full.begin(), full.end(), false));
    const size_t room = limit > out.size() + 1 ? limit - out.size() - 1 : 0;
    size_t shown = 0;
    for (size_t i = 0; i < blocks.size(); ++i) {
      if (full[i]) continue;
      if (shown == room && shown + 1 < others) {
        out.push_back(fmt::format("  … {} more GILs", others - shown));
        break;
      }
      out.push_back("  " + compact_gil(r.gils[i]));
      ++shown;
    }
  }
  return out;
}

// One block of lines per histogram drawn (each starting with a blank line).
std::vector<Lines> histogram_blocks(const Report& r, const TextOptions& opt) {
  std::vector<Lines> out;
  const auto add = [&](const Histogram& h, const std::string& title) {
    Lines block{""};
    append(block, lines_of([&](std::ostream& o) { render_histogram(h, title, o); }));
    out.push_back(std::move(block));
  };
  if (!opt.histograms) return out;
  // The GILs' distributions, or those of the threads a report has been
  // narrowed to.
  if (opt.thread_histograms) {
    for (const ThreadReport& t : r.threads) {
      add(t.wait_hist, fmt::format("{} ({}) wait", clean(t.name), t.tid));
      add(t.hold_hist, fmt::format("{} ({}) hold", clean(t.name), t.tid));
    }
  } else {
    for (const GilReport& g : r.gils) {
      add(g.wait_hist, fmt::format("GIL {} wait", g.id));
      add(g.hold_hist, fmt::format("GIL {} hold", g.id));
    }
  }
  return out;
}

Lines findings_section(const Report& r, size_t limit) {
  const std::vector<Finding> findings = find_findings(r);
  if (findings.empty()) return {};
  Lines out{"", "What this means"};
  for (size_t i = 0; i < findings.size(); ++i) {
    const Lines one =
        lines_of([&](std::ostream& o) { o << wrap(clean(findings[i].text), "  • ", "    ", 100); });
    if (limit > 0 && out.size() + one.size() + 1 > limit) {
      out.push_back(
          fmt::format("  … {} more findings (--json lists them all)", findings.size() - i));
      break;
    }
    append(out, one);
  }
  return out;
}

}  // namespace

std::string format_count(uint64_t n) {
  std::string digits = fmt::format("{}", n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string row_label(const TableRow& row) {
  if (!row.folded()) return row.thread().name;
  return fmt::format("{} ×{}", row.sums.key, format_count(row.members.size()));
}

std::string format_duration(uint64_t ns) {
  if (ns < 1000) return fmt::format("{} ns", ns);
  static constexpr struct {
    double scale;
    const char* unit;
  } kUnits[] = {{1e3, "µs"}, {1e6, "ms"}, {1e9, "s"}};
  for (size_t i = 0;; ++i) {
    const double v = static_cast<double>(ns) / kUnits[i].scale;
    // Move up a unit when rounding would print "1000 µs".
    if (v >= 999.5 && i + 1 < std::size(kUnits)) continue;
    if (v < 9.995) return fmt::format("{:.2f} {}", v, kUnits[i].unit);
    if (v < 99.95) return fmt::format("{:.1f} {}", v, kUnits[i].unit);
    return fmt::format("{:.0f} {}", v, kUnits[i].unit);
  }
}

void render_histogram(const Histogram& h, std::string_view title, std::ostream& out) {
  if (h.count() == 0) return;
  // Row edges 1, 2, 5, 10, 20, 50 ... ns; each log bucket goes to the row of
  // its middle (the same approximation as the percentiles, within 1.6 %).
  std::vector<uint64_t> edges{0};
  for (uint64_t decade = 1; edges.size() < 60; decade *= 10) {
    for (uint64_t m : {1, 2, 5}) edges.push_back(decade * m);
    if (decade > UINT64_MAX / 100) break;
  }
  std::vector<uint64_t> rows(edges.size(), 0);
  for (const Histogram::Bucket& b : h.buckets()) {
    const uint64_t mid = b.lo + (b.hi - b.lo) / 2;
    const size_t i =
        static_cast<size_t>(std::upper_bound(edges.begin(), edges.end(), mid) - edges.begin()) - 1;
    rows[i] += b.count;
  }
  size_t first = 0, last = rows.size() - 1;
  while (rows[first] == 0) ++first;
  while (rows[last] == 0) --last;
  const uint64_t max = *std::max_element(rows.begin(), rows.end());
  out << fmt::format("  {} ({} values, log scale)\n", title, count(h.count()));
  for (size_t i = first; i <= last; ++i) {
    const std::string lo = i == 0 ? "0" : format_duration(edges[i]);
    const std::string hi = i + 1 < edges.size() ? format_duration(edges[i + 1]) : "∞";
    out << fmt::format("  {} – {} {} {}\n", cell(lo, 8), cell(hi, 8, false),
                       cell(bar(rows[i], max, 40), 40, false), cell(count(rows[i]), 12));
  }
}

EnabledSpells enabled_spells(const GilReport& g) {
  EnabledSpells s;
  uint32_t prev = 0;
  for (size_t i = 0; i < g.enabled_changes.size(); ++i) {
    const EnabledChange& c = g.enabled_changes[i];
    if (c.enabled != 0 && (i == 0 || prev == 0)) {
      ++s.count;
      s.last_on_ns = c.at_ns;
    }
    prev = c.enabled;
  }
  return s;
}

void render_text(const Report& r, std::ostream& out, const TextOptions& opt) {
  render_header(r, out);
  uint64_t acquisitions = 0;
  for (const GilReport& g : r.gils) acquisitions += g.acquisitions;
  if (r.free_threaded && acquisitions == 0) {
    out << "\nFree-threaded build with the GIL disabled: there was no GIL traffic to measure.\n";
    return;
  }
  if (r.gils.empty()) {
    out << "\nNo GIL activity was recorded.\n";
    return;
  }
  const bool short_report = opt.max_lines > 0;
  const Lines header = lines_of([&](std::ostream& o) { render_header(r, o); });
  const Lines gils = gil_section(r, short_report ? kGilLines : 0);
  const Lines findings =
      opt.findings ? findings_section(r, short_report ? kFindingLines : 0) : Lines{};
  const Lines profile = profile_section(r, short_report ? kProfileEntries : SIZE_MAX);
  const Lines hogs =
      hogs_section(r, short_report ? kHogEntries : SIZE_MAX, short_report ? kHogFrames : SIZE_MAX);
  const Lines modules = lines_of(
      [&](std::ostream& o) { render_modules_text(r.modules, o, short_report ? kModuleRows : 0); });
  const std::vector<Lines> histograms = histogram_blocks(r, opt);
  const std::vector<TableRow> rows = table_rows(r.threads);
  TableLayout table{opt.max_threads == 0 ? rows.size() : opt.max_threads, opt.max_threads == 0,
                    opt.width};
  size_t drawn = histograms.size();
  if (short_report) {
    // The room left after what is always shown goes to the first rows,
    // then to the histograms, then to the other rows.
    const size_t fixed = header.size() + gils.size() + profile.size() + hogs.size() +
                         modules.size() + findings.size() + 1;  // + blank line
    const size_t room = opt.max_lines > fixed ? opt.max_lines - fixed : 0;
    const auto lines = [&](size_t n) { return thread_table_lines(rows, n, table.members); };
    const size_t max_rows = std::min(table.rows, rows.size());
    table.rows = std::min(max_rows, kFirstRows);
    while (table.rows > 0 && lines(table.rows) > room) --table.rows;
    size_t left = room - std::min(room, lines(table.rows));
    size_t all = 0;
    for (const Lines& h : histograms) all += h.size();
    if (all > left) {
      left = left >= 2 ? left - 2 : 0;  // the line saying what was left out
      for (drawn = 0; drawn < histograms.size() && histograms[drawn].size() <= left; ++drawn)
        left -= histograms[drawn].size();
    } else {
      left -= all;
    }
    while (table.rows < max_rows && lines(table.rows + 1) - lines(table.rows) <= left) {
      left -= lines(table.rows + 1) - lines(table.rows);
      ++table.rows;
    }
  }
  Lines body = gils;
  body.push_back("");
  append(body, thread_table(r, rows, table));
  append(body, profile);
  append(body, hogs);
  append(body, modules);
  for (size_t i = 0; i < drawn; ++i) append(body, histograms[i]);
  if (drawn < histograms.size()) {
    body.push_back("");
    body.push_back(fmt::format(
        "({} of {} histograms left out to keep this report short: --max-threads all draws them)",
        histograms.size() - drawn, histograms.size()));
  }
  append(body, findings);
  for (const std::string& line : body) out << line << '\n';
}

}  // namespace gilstat::report

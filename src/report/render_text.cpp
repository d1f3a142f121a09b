#include "report/render_text.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <iterator>
#include <string_view>

#include "report/findings.hpp"
#include "report/utf8.hpp"

namespace gilstat::report {

namespace {

// Printable text of at most `width` characters: control characters (an
// escape sequence in a thread name) become '?', bad UTF-8 becomes U+FFFD, a
// cut is marked with '…'.  Width counts code points, so "µs" lines up.
std::string clean(std::string_view s, size_t width = SIZE_MAX) {
  std::string out;
  size_t n = 0;
  for (size_t i = 0; i < s.size();) {
    char32_t cp;
    i += utf8_decode(s, i, cp);
    if (n + 1 == width && i < s.size()) {
      utf8_append(out, U'…');
      return out;
    }
    if (n == width) return out;
    utf8_append(out, (cp < 0x20 || (cp >= 0x7F && cp < 0xA0)) ? U'?' : cp);
    ++n;
  }
  return out;
}

size_t columns(std::string_view s) {
  return static_cast<size_t>(std::count_if(s.begin(), s.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xC0) != 0x80;  // not a continuation byte
  }));
}

// A table cell: fitted to width, padded left (right-aligned) or right.
std::string cell(std::string_view s, size_t width, bool right = true) {
  std::string text = clean(s, width);
  const std::string pad(width - std::min(width, columns(text)), ' ');
  return right ? pad + text : text + pad;
}

// 1234567 -> "1,234,567": counts are read at a glance.
std::string count(uint64_t n) {
  std::string digits = fmt::format("{}", n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string percent(double part, double whole) {
  return whole > 0 ? fmt::format("{:.1f}", 100.0 * part / whole) : "-";
}

std::string python_line(const Report& r) {
  std::string py = r.python_version.empty() ? "?" : clean(r.python_version, 32);
  return fmt::format("Python {}{} ({} libpython)", py, r.free_threaded ? " free-threaded" : "",
                     r.libpython_shared ? "shared" : "static");
}

void render_header(const Report& r, std::ostream& out) {
  out << fmt::format("gilstat {} · pid {}{}{}\n", clean(r.gilstat_version, 32), r.pid,
                     r.command.empty() ? "" : " · ", clean(r.command, 100));
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
  if (r.drops > 0) {
    out << fmt::format(
        "WARNING: {} events were lost ({} with a full ring, {} with no free ring): the numbers "
        "below undercount.\n",
        count(r.drops), count(r.drops - r.drops_no_ring), count(r.drops_no_ring));
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

void render_gil(const GilReport& g, std::ostream& out) {
  std::string interps;
  if (!g.interpreters.empty())
    interps = fmt::format("  interpreters {}", fmt::join(g.interpreters, ","));
  // Display clamps to [0, 100] %; a raw value outside is a measurement error
  // and is printed beside it, never hidden.
  std::string util = fmt::format("{:.1f} %", 100.0 * std::clamp(g.utilization, 0.0, 1.0));
  if (g.utilization > 1.0 || g.utilization < 0.0)
    util +=
        fmt::format(" (raw {:.3f}: hold time exceeds the window, check the clock)", g.utilization);
  out << fmt::format("\nGIL {}{}  utilization {}\n", g.id, interps, util);
  render_enabled(g, out);
  render_switch_check(g, out);
  out << fmt::format("  forced-switch requests {}   forced hand-offs {}\n",
                     count(g.forced_switch_requests), count(g.forced_handoffs));
  if (g.seq_gaps || g.seq_stale || g.anomalies) {
    out << fmt::format(
        "  WARNING: {} events missing from the GIL's sequence, {} late, {} anomalies: "
        "GIL-level figures are incomplete\n",
        count(g.seq_gaps), count(g.seq_stale), count(g.anomalies));
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
  size_t used = columns(first);
  bool line_empty = true;
  for (size_t start = 0; start < text.size();) {
    size_t end = text.find(' ', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view word = text.substr(start, end - start);
    start = end + 1;
    if (word.empty()) continue;
    if (!line_empty && used + 1 + columns(word) > width) {
      out += '\n';
      out += indent;
      used = columns(indent);
      line_empty = true;
    }
    if (!line_empty) {
      out += ' ';
      ++used;
    }
    out += word;
    used += columns(word);
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

void render_threads(const Report& r, std::ostream& out, const TextOptions& opt) {
  const bool multi_gil = r.gils.size() > 1;
  const auto line = [&](std::string_view name, std::string_view tid, std::string_view gil,
                        std::string_view held, std::string_view wait, std::string_view rel,
                        std::string_view held_s, std::string_view wait_s, std::string_view acq,
                        std::string_view wait_p99, std::string_view hold_max) {
    out << fmt::format("{} {}{}{}{}{}{}{}{}{}{}\n", cell(name, 20, false), cell(tid, 8),
                       multi_gil ? cell(gil, 4) : "", cell(held, 7), cell(wait, 7), cell(rel, 7),
                       cell(held_s, 10), cell(wait_s, 10), cell(acq, 10), cell(wait_p99, 10),
                       cell(hold_max, 10));
  };
  out << '\n';
  line("THREAD", "TID", "GIL", "HELD%", "WAIT%", "REL%", "HELD s", "WAIT s", "ACQ", "WAIT p99",
       "HOLD max");
  const size_t shown =
      opt.max_threads ? std::min(opt.max_threads, r.threads.size()) : r.threads.size();
  for (size_t i = 0; i < shown; ++i) {
    const ThreadReport& t = r.threads[i];
    line(t.name, fmt::format("{}", t.tid), fmt::format("{}", t.gil),
         percent(t.held_ns, t.lifetime_ns), percent(t.wait_total_ns, t.lifetime_ns),
         percent(t.released_ns, t.lifetime_ns), fmt::format("{:.3f}", t.held_ns / 1e9),
         fmt::format("{:.3f}", t.wait_total_ns / 1e9), count(t.acquisitions),
         t.wait_ns.count ? format_duration(t.wait_ns.p99) : "-",
         t.hold_ns.count ? format_duration(t.hold_ns.max) : "-");
  }
  if (shown < r.threads.size())
    out << fmt::format("… {} more threads (--json lists all)\n", r.threads.size() - shown);
}

}  // namespace

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
  for (const GilReport& g : r.gils) render_gil(g, out);
  render_threads(r, out, opt);
  if (opt.histograms) {
    // The GILs' distributions, or those of the threads a report has been
    // narrowed to.
    if (opt.thread_histograms) {
      for (const ThreadReport& t : r.threads) {
        out << '\n';
        render_histogram(t.wait_hist, fmt::format("{} ({}) wait", clean(t.name, 40), t.tid), out);
        out << '\n';
        render_histogram(t.hold_hist, fmt::format("{} ({}) hold", clean(t.name, 40), t.tid), out);
      }
    } else {
      for (const GilReport& g : r.gils) {
        out << '\n';
        render_histogram(g.wait_hist, fmt::format("GIL {} wait", g.id), out);
        out << '\n';
        render_histogram(g.hold_hist, fmt::format("GIL {} hold", g.id), out);
      }
    }
  }
  if (opt.findings) {
    const std::vector<Finding> findings = find_findings(r);
    if (!findings.empty()) {
      out << "\nWhat this means\n";
      for (const Finding& f : findings) out << wrap(clean(f.text), "  • ", "    ", 100);
    }
  }
}

}  // namespace gilstat::report

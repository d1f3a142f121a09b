#include "report/findings.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>

#include "report/groups.hpp"
#include "report/render_text.hpp"
#include "report/stuck_hint.hpp"

namespace gilstat::report {
namespace {

std::string percent(double share) { return fmt::format("{:.0f} %", 100.0 * share); }

// 45123.4 -> "45,123"
std::string rate(double per_s) {
  return format_count(static_cast<uint64_t>(std::llround(std::max(per_s, 0.0))));
}

bool is_native(const TableRow& row) { return row.sums.key.rfind("native-", 0) == 0; }

// A share as the table prints it (HELD% of the window, WAIT%LIFE).
std::string table_share(double part, double whole) {
  return fmt::format("{:.1f} %", whole > 0 ? 100.0 * part / whole : 0.0);
}

double wait_share(const TableRow& row) {
  return row.sums.lifetime_ns > 0 ? row.sums.wait_total_ns / row.sums.lifetime_ns : 0;
}

// The busiest row of each GIL that is not gilstat's own: the kind of thread
// the table shows holding it most.
std::map<uint32_t, const TableRow*> top_holders(const std::vector<TableRow>& rows) {
  std::map<uint32_t, const TableRow*> top;
  for (const TableRow& row : rows)  // busiest first
    if (!row.sums.own && row.sums.held_ns > 0) top.emplace(row.sums.gil, &row);
  return top;
}

// Up to kMaxThreadFindings findings for the rows that match, worst first.
void per_row(const std::vector<TableRow>& rows, std::vector<Finding>& out, const std::string& id,
             const std::function<bool(const TableRow&)>& match,
             const std::function<double(const TableRow&)>& badness,
             const std::function<std::string(const TableRow&)>& text) {
  std::vector<const TableRow*> hits;
  for (const TableRow& row : rows)
    if (!row.sums.own && match(row)) hits.push_back(&row);
  std::stable_sort(hits.begin(), hits.end(),
                   [&](auto* a, auto* b) { return badness(*a) > badness(*b); });
  for (size_t i = 0; i < hits.size() && i < kMaxThreadFindings; ++i)
    out.push_back({id, "warning", text(*hits[i])});
  if (hits.size() > kMaxThreadFindings)
    out.push_back(
        {id, "warning",
         fmt::format("… and {} more rows like these.", hits.size() - kMaxThreadFindings)});
}

// Starved rows of one GIL: one finding for all of them (a spin workload has
// several), never naming the kind that holds the GIL most (that is a busy
// GIL, said by busy_gil), and saying who does hold it.
void starved_rows(const std::vector<const TableRow*>& starved, const TableRow* top, bool multi_gil,
                  double window_ns, std::vector<Finding>& out) {
  if (starved.empty()) return;
  std::string who;
  const size_t shown = std::min(starved.size(), kMaxThreadFindings);
  bool plural = starved.size() > 1;
  for (size_t i = 0; i < shown; ++i) {
    const TableRow& row = *starved[i];
    plural |= row.folded();
    who += fmt::format("{}{} ({})",
                       i == 0                                        ? ""
                       : (i + 1 == shown && shown == starved.size()) ? " and "
                                                                     : ", ",
                       row_label(row), table_share(row.sums.wait_total_ns, row.sums.lifetime_ns));
  }
  if (starved.size() > shown) who += fmt::format(" and {} more rows", starved.size() - shown);
  std::string holder;
  if (top)
    holder = fmt::format(", while {} held it most ({} of the window)", row_label(*top),
                         table_share(top->sums.held_ns, window_ns));
  const std::string gil =
      multi_gil ? fmt::format("GIL {}", starved.front()->sums.gil) : std::string("the GIL");
  out.push_back({"starved_thread", "warning",
                 plural ? fmt::format("{} spent most of their lives waiting for {} "
                                      "(WAIT%LIFE){}: they are starved; their progress is set "
                                      "by the other threads' Python code, not by their own "
                                      "work.",
                                      who, gil, holder)
                        : fmt::format("{} spent most of its life waiting for {} "
                                      "(WAIT%LIFE){}: it is starved; its progress is set by the "
                                      "other threads' Python code, not by its own work.",
                                      who, gil, holder)});
}

}  // namespace

// Threads met mid-hold or mid-wait: their rows count from the arm.
static void since_before_attach(const Report& r, std::vector<Finding>& out) {
  size_t n = 0;
  for (const ThreadReport& t : r.threads) {
    if (t.at_attach.empty()) continue;
    if (++n > kMaxThreadFindings) continue;
    out.push_back(
        {"since_before_attach", "info",
         fmt::format("{} (tid {}) was already {} GIL {} when gilstat attached (since before "
                     "attach): its {} time counts from the attach, the stretch began earlier.",
                     t.name, t.tid, t.at_attach == "holding" ? "holding" : "waiting for", t.gil,
                     t.at_attach == "holding" ? "held" : "wait")});
  }
  if (n > kMaxThreadFindings)
    out.push_back({"since_before_attach", "info",
                   fmt::format("… and {} more threads like these.", n - kMaxThreadFindings)});
}

std::vector<Finding> find_findings(const Report& r) {
  std::vector<Finding> out;
  const double window_ns = r.duration_s * 1e9;

  if (r.recording.truncated)
    out.push_back({"truncated", "warning",
                   fmt::format("The recording was cut off (its writer was killed, or the disk "
                               "filled): these figures cover the {} that were saved.",
                               format_duration(saturating_ns(window_ns)))});
  if (r.recording.corrupt_chunks)
    out.push_back({"corrupt_chunks", "warning",
                   fmt::format("{} damaged part(s) of the file were skipped: the events in them "
                               "are missing from every figure.",
                               r.recording.corrupt_chunks)});
  for (const GilReport& g : r.gils)
    if (auto hint = stuck_hint(r, g)) out.push_back({"gil_stuck", "warning", *hint + "."});
  since_before_attach(r, out);
  if (r.untracked_events)
    out.push_back({"too_many_threads", "warning",
                   fmt::format("The recording names more threads than a report tracks; the {} "
                               "events of the others are left out of every figure.",
                               r.untracked_events)});
  if (!r.recording.calibrated)
    out.push_back({"uncalibrated", "warning",
                   "The recording ends before its clock could be calibrated: durations are TSC "
                   "ticks shown as if they were nanoseconds."});
  if (r.drops)
    out.push_back(
        {"drops", "warning",
         fmt::format("{} events were lost ({} because a thread's ring was full: the reader did "
                     "not keep up; {} because every ring was taken: more live threads than "
                     "rings). {}",
                     r.drops, r.drops - std::min(r.drops, r.drops_no_ring), r.drops_no_ring,
                     !r.totals_exact ? "Counts and times undercount."
                     : r.drops_no_ring
                         ? "Threads with a ring have exact totals (counted in the probe); "
                           "threads with none are missing."
                         : "Totals, acquisitions and switches are exact (counted in the "
                           "probe); percentiles and histograms miss the lost events.")});

  for (const GilReport& g : r.gils) {
    const double waiters = g.mean_waiting_threads;
    if (g.utilization >= kBusyUtilization && waiters >= kBusyWaiters) {
      out.push_back(
          {"busy_gil", "warning",
           fmt::format("GIL {} was held {} of the time with {:.1f} threads waiting for it on "
                       "average: CPU-bound Python threads are taking turns, so more threads do "
                       "not make it faster. Use processes, or move the hot loop into native "
                       "code that releases the GIL.",
                       g.id, percent(std::min(g.utilization, 1.0)), waiters)});
    } else if (g.acquisitions > 0 && g.utilization < kIdleUtilization && window_ns > 0 &&
               g.disabled_ns <= 0) {  // disabled time is not free time: see gil_enabled
      out.push_back({"idle_gil", "info",
                     fmt::format("GIL {} was free {} of the time: the GIL is not what limits "
                                 "this program.",
                                 g.id, percent(1.0 - std::max(g.utilization, 0.0)))});
    }
    // A free-threaded build that ended the window with its GIL on after
    // running without it: almost always an import, and worth knowing.
    if (g.disabled_ns > 0 && !g.enabled_changes.empty() && g.enabled_changes.back().enabled != 0)
      out.push_back(
          {"gil_enabled", "warning",
           fmt::format("GIL {} of this free-threaded build was disabled for {}, then enabled at "
                       "{:.3f} s{}: importing an extension module that does not declare itself "
                       "free-threading-safe does that (CPython's RuntimeWarning names it). From "
                       "then on Python threads take turns again; PYTHON_GIL=0 keeps it off, at "
                       "that module's risk.",
                       g.id, format_duration(saturating_ns(g.disabled_ns)),
                       enabled_spells(g).last_on_ns / 1e9,
                       g.enabled_changes.back().enabled == kEnabledForGood ? " for good" : "")});
    if (g.switch_number_known && g.switch_number_delta >= 0 &&
        g.switches != static_cast<uint64_t>(g.switch_number_delta) && !r.recording.truncated)
      out.push_back({"switch_mismatch", "warning",
                     fmt::format("GIL {}: {} holder changes were reconstructed but CPython "
                                 "counted {}: events were lost, so GIL-level figures are "
                                 "approximate.",
                                 g.id, g.switches, g.switch_number_delta)});
  }

  // The rest is about kinds of threads as the table shows them: a folded
  // group (its sums) or one thread.
  const std::vector<TableRow> rows = table_rows(r.threads);
  const std::map<uint32_t, const TableRow*> top = top_holders(rows);
  const auto top_of = [&](uint32_t gil) -> const TableRow* {
    auto it = top.find(gil);
    return it == top.end() ? nullptr : it->second;
  };

  // Where a GIL's held time goes, when one kind of thread takes most of it.
  for (const GilReport& g : r.gils) {
    // Of the GIL's own held time: a report narrowed with --thread shows
    // only some of its rows.
    const TableRow* t = top_of(g.id);
    const double held = g.utilization * window_ns;
    if (!t || g.utilization < kIdleUtilization || held <= 0 || t->sums.held_ns < 0.5 * held)
      continue;
    out.push_back({"main_holder", "info",
                   fmt::format("{} held GIL {} {} of the window ({} of the GIL's held time): "
                               "when the GIL is what limits this program, that Python code is "
                               "the one to make faster or to move into native code that "
                               "releases the GIL.",
                               row_label(*t), g.id, table_share(t->sums.held_ns, window_ns),
                               percent(t->sums.held_ns / held))});
  }

  {
    std::map<uint32_t, std::vector<const TableRow*>> starved;
    for (const TableRow& row : rows) {
      const TableRow* holder = top_of(row.sums.gil);
      if (row.sums.own || wait_share(row) < kStarvedWaitShare) continue;
      if (holder && holder->sums.key == row.sums.key) continue;
      starved[row.sums.gil].push_back(&row);
    }
    for (auto& [gil, list] : starved) {
      std::stable_sort(list.begin(), list.end(),
                       [](auto* a, auto* b) { return wait_share(*a) > wait_share(*b); });
      starved_rows(list, top_of(gil), r.gils.size() > 1, window_ns, out);
    }
  }

  const auto per_second = [](const TableRow& row) {
    return row.sums.lifetime_ns > 0 ? row.sums.acquisitions / (row.sums.lifetime_ns / 1e9) : 0.0;
  };
  per_row(
      rows, out, "hot_reacquire",
      [&](const TableRow& row) {
        return row.sums.acquisitions >= kHotMinAcquisitions &&
               per_second(row) >= kHotAcquisitionsPerSecond;
      },
      per_second,
      [&](const TableRow& row) {
        const auto mean_hold = saturating_ns(
            row.sums.held_ns / static_cast<double>(std::max<uint64_t>(1, row.sums.acquisitions)));
        const std::string who =
            row.folded() ? fmt::format("{} acquired the GIL {} times a second each ({} in all)",
                                       row_label(row), rate(per_second(row)),
                                       format_count(row.sums.acquisitions))
                         : fmt::format("{} acquired the GIL {} times a second", row_label(row),
                                       rate(per_second(row)));
        if (is_native(row))
          return fmt::format(
              "{} (a native thread without a Python name; mean hold {}): native code calling back "
              "into Python "
              "item by item (PyGILState_Ensure/Release in a loop). Every round trip is a GIL "
              "hand-off; batch the calls.",
              who, format_duration(mean_hold));
        return fmt::format(
            "{} (mean hold {}): it drops and retakes the GIL around many tiny blocking or "
            "native calls; each retake may wait for another thread. Batch the work per call.",
            who, format_duration(mean_hold));
      });

  per_row(
      rows, out, "ignores_drop_requests",
      [](const TableRow& row) {
        return row.sums.drop_latency_count > 0 && row.sums.drop_latency_max_ns >= kIgnoredRequestNs;
      },
      [](const TableRow& row) { return static_cast<double>(row.sums.drop_latency_max_ns); },
      [](const TableRow& row) {
        const std::string how_long =
            row.folded()
                ? fmt::format("up to {} ({} requests)",
                              format_duration(row.sums.drop_latency_max_ns),
                              format_count(row.sums.drop_latency_count))
                : fmt::format("up to {} (p50 {})", format_duration(row.sums.drop_latency_max_ns),
                              format_duration(row.thread().drop_latency_ns.p50));
        return fmt::format(
            "{} kept the GIL {} after another thread asked for it: it was running code that "
            "does not reach the interpreter's switch check (one long C call holding the GIL: "
            "a big regex or sort, a C extension that does not release it), or it had no CPU "
            "to run on. Every other thread stalls that long.",
            row_label(row), how_long);
      });
  return out;
}

}  // namespace gilstat::report

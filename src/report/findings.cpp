#include "report/findings.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>

#include "report/render_text.hpp"

namespace gilstat::report {
namespace {

std::string percent(double share) { return fmt::format("{:.0f} %", 100.0 * share); }

// 45123.4 -> "45,123"
std::string rate(double per_s) {
  const std::string digits = fmt::format("{:.0f}", per_s);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

bool is_native(const ThreadReport& t) { return t.name.rfind("native-", 0) == 0; }

// Up to kMaxThreadFindings findings for the threads that match, worst first.
void per_thread(const Report& r, std::vector<Finding>& out, const std::string& id,
                const std::function<bool(const ThreadReport&)>& match,
                const std::function<double(const ThreadReport&)>& badness,
                const std::function<std::string(const ThreadReport&)>& text) {
  std::vector<const ThreadReport*> hits;
  for (const ThreadReport& t : r.threads)
    if (!t.own && match(t)) hits.push_back(&t);
  std::stable_sort(hits.begin(), hits.end(),
                   [&](auto* a, auto* b) { return badness(*a) > badness(*b); });
  for (size_t i = 0; i < hits.size() && i < kMaxThreadFindings; ++i)
    out.push_back({id, "warning", text(*hits[i])});
  if (hits.size() > kMaxThreadFindings)
    out.push_back(
        {id, "warning",
         fmt::format("… and {} more threads like these.", hits.size() - kMaxThreadFindings)});
}

}  // namespace

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
                     "rings). Counts and times undercount.",
                     r.drops, r.drops - std::min(r.drops, r.drops_no_ring), r.drops_no_ring)});

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

  // Starved threads: one line for all of them (a spin workload has several).
  {
    std::vector<const ThreadReport*> starved;
    for (const ThreadReport& t : r.threads)
      if (!t.own && t.lifetime_ns > 0 && t.wait_total_ns / t.lifetime_ns >= kStarvedWaitShare)
        starved.push_back(&t);
    std::stable_sort(starved.begin(), starved.end(), [](auto* a, auto* b) {
      return a->wait_total_ns / a->lifetime_ns > b->wait_total_ns / b->lifetime_ns;
    });
    std::string who;
    const size_t shown = std::min(starved.size(), kMaxThreadFindings);
    for (size_t i = 0; i < shown; ++i) {
      const ThreadReport& t = *starved[i];
      who += fmt::format("{}{} ({})",
                         i == 0                                        ? ""
                         : (i + 1 == shown && shown == starved.size()) ? " and "
                                                                       : ", ",
                         t.name, percent(t.wait_total_ns / t.lifetime_ns));
    }
    if (starved.size() > shown) who += fmt::format(" and {} more threads", starved.size() - shown);
    if (starved.size() == 1)
      out.push_back({"starved_thread", "warning",
                     fmt::format("{} spent most of its life waiting for the GIL: it is starved; "
                                 "its progress is set by the other threads' Python code, not by "
                                 "its own work.",
                                 who)});
    else if (!starved.empty())
      out.push_back({"starved_thread", "warning",
                     fmt::format("{} spent most of their lives waiting for the GIL: they are "
                                 "starved; their progress is set by the other threads' Python "
                                 "code, not by their own work.",
                                 who)});
  }

  per_thread(
      r, out, "hot_reacquire",
      [](const ThreadReport& t) {
        return t.acquisitions >= kHotMinAcquisitions && t.lifetime_ns > 0 &&
               t.acquisitions / (t.lifetime_ns / 1e9) >= kHotAcquisitionsPerSecond;
      },
      [](const ThreadReport& t) { return t.acquisitions / t.lifetime_ns; },
      [](const ThreadReport& t) {
        const double per_s = t.acquisitions / (t.lifetime_ns / 1e9);
        const auto mean_hold =
            saturating_ns(t.held_ns / static_cast<double>(std::max<uint64_t>(1, t.acquisitions)));
        if (is_native(t))
          return fmt::format(
              "{} (a native thread, no Python name) acquired the GIL {} times a second "
              "(mean hold {}): native code calling back into Python item by item "
              "(PyGILState_Ensure/Release in a loop). Every round trip is a GIL hand-off; "
              "batch the calls.",
              t.name, rate(per_s), format_duration(mean_hold));
        return fmt::format(
            "{} acquired the GIL {} times a second (mean hold {}): it drops and retakes the "
            "GIL around many tiny blocking or native calls; each retake may wait for "
            "another thread. Batch the work per call.",
            t.name, rate(per_s), format_duration(mean_hold));
      });

  per_thread(
      r, out, "ignores_drop_requests",
      [](const ThreadReport& t) {
        return t.drop_latency_ns.count > 0 && t.drop_latency_ns.max >= kIgnoredRequestNs;
      },
      [](const ThreadReport& t) { return static_cast<double>(t.drop_latency_ns.max); },
      [](const ThreadReport& t) {
        return fmt::format(
            "{} kept the GIL up to {} (p50 {}) after another thread asked for it: it was "
            "running code that does not reach the interpreter's switch check (one long C "
            "call holding the GIL: a big regex or sort, a C extension that does not release "
            "it), or it had no CPU to run on. Every other thread stalls that long.",
            t.name, format_duration(t.drop_latency_ns.max), format_duration(t.drop_latency_ns.p50));
      });
  return out;
}

}  // namespace gilstat::report

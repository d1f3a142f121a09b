#include "cli/demo_truth.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <sstream>
#include <utility>

#include "common/error.hpp"

namespace gilstat::cli::demo {

const std::string& Fact::str(const std::string& key) const {
  auto it = fields.find(key);
  if (it == fields.end())
    throw Error(fmt::format("demo script output: `{}` line has no {}=", kind, key),
                "the demo scripts and the gilstat binary do not match: rebuild or reinstall");
  return it->second;
}

double Fact::num(const std::string& key) const {
  const std::string& s = str(key);
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (end == s.c_str() || *end != '\0')
    throw Error(fmt::format("demo script output: {}={} is not a number", key, s));
  return v;
}

std::vector<Fact> parse_truth(const std::string& text) {
  std::vector<Fact> facts;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    std::string tag;
    Fact f;
    if (!(words >> tag) || tag != "gilstat-demo" || !(words >> f.kind)) continue;
    for (std::string kv; words >> kv;) {
      const auto eq = kv.find('=');
      if (eq != std::string::npos) f.fields[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    facts.push_back(std::move(f));
  }
  return facts;
}

const Fact& one(const std::vector<Fact>& facts, const std::string& kind) {
  for (const auto& f : facts)
    if (f.kind == kind) return f;
  throw Error(fmt::format("demo script printed no `gilstat-demo {}` line", kind),
              "the demo scripts and the gilstat binary do not match: rebuild or reinstall");
}

std::vector<const Fact*> all(const std::vector<Fact>& facts, const std::string& kind,
                             const std::string& role) {
  std::vector<const Fact*> out;
  for (const auto& f : facts)
    if (f.kind == kind && (role.empty() || (f.fields.count("role") && f.str("role") == role)))
      out.push_back(&f);
  return out;
}

std::string pct(double fraction) { return fmt::format("{:.1f} %", fraction * 100); }
std::string secs(double s) { return fmt::format("{:.3f} s", s); }

Check timing_bound(Check c) {
  c.timing = true;
  return c;
}

Check near_share(std::string what, double expected, double tol_pp, double measured) {
  return timing_bound({std::move(what), fmt::format("{:.1f} % ± {:g} pp", expected * 100, tol_pp),
                       pct(measured), std::abs(measured - expected) * 100 <= tol_pp});
}
Check share_within(std::string what, double expected, double below_pp, double above_pp,
                   double measured) {
  const double off = (measured - expected) * 100;
  constexpr double kRounding = 1e-9;  // 0.55 − 0.5 is 5.000000000000004 pp
  return timing_bound({std::move(what),
                       fmt::format("{:.1f} % −{:g}/+{:g} pp", expected * 100, below_pp, above_pp),
                       pct(measured), off >= -below_pp - kRounding && off <= above_pp + kRounding});
}
Check share_at_least(std::string what, double bound, double measured) {
  return timing_bound({std::move(what), "≥ " + pct(bound), pct(measured), measured >= bound});
}
Check share_at_most(std::string what, double bound, double measured) {
  return timing_bound({std::move(what), "≤ " + pct(bound), pct(measured), measured <= bound});
}

bool Verdict::passed() const {
  return std::all_of(checks.begin(), checks.end(), [](const Check& c) { return c.pass; });
}

bool Verdict::failed_timing_only() const {
  return !passed() && std::all_of(checks.begin(), checks.end(),
                                  [](const Check& c) { return c.pass || c.timing; });
}

const report::ThreadReport* find_thread(const report::Report& r, uint32_t tid, uint32_t gil) {
  for (const auto& t : r.threads)
    if (t.tid == tid && t.gil == gil) return &t;
  return nullptr;
}

// The row of a thread the script says exists; its absence is a failed check.
const report::ThreadReport* require_thread(const report::Report& r, const Fact& f, Verdict& v) {
  const auto* t = find_thread(r, f.tid());
  if (!t)
    v.checks.push_back({fmt::format("{} (tid {}) in the report", f.str("name"), f.tid()), "present",
                        "missing", false});
  return t;
}

double share(double part_ns, const report::ThreadReport& t) {
  return t.lifetime_ns > 0 ? part_ns / t.lifetime_ns : 0;
}

// The scripts read each timed thread's run-queue wait (schedstat: runnable
// but without a CPU).  On a shared machine that time belongs to other
// programs, and no GIL measurement can give it back: shown next to FAILs.
double starvation(const std::vector<Fact>& truth, const report::Report& r) {
  double runq = 0, life = 0;
  for (const Fact* f : all(truth, "thread"))
    if (f->fields.count("runq_s"))
      if (const auto* t = find_thread(r, f->tid())) {
        runq += f->num("runq_s");
        life += t->lifetime_ns / 1e9;
      }
  return life > 0 ? runq / life : 0;
}

// What holds by construction in every report, however busy the machine:
// CPython's own switch counter agrees with the reconstruction,
// nothing was lost or impossible, and each thread's held, waiting and
// released times add up to its lifetime.  `label` names the run when a demo
// used more than one.
void exact_checks(const report::Report& r, const std::string& label, Verdict& v) {
  uint64_t broken = 0;
  for (const auto& g : r.gils) {
    v.checks.push_back(
        {fmt::format("{}GIL {}: switches", label, g.id),
         fmt::format("= switch_number Δ {}", g.switch_number_delta), std::to_string(g.switches),
         g.switch_number_known && static_cast<int64_t>(g.switches) == g.switch_number_delta});
    broken += g.anomalies + g.seq_gaps + g.seq_stale;
  }
  v.checks.push_back({label + "events dropped, out of order, impossible", "0",
                      std::to_string(r.drops + broken), r.drops + broken == 0});
  // The four are sums of the same tick intervals: only rounding may differ.
  double worst_ns = 0;
  for (const auto& t : r.threads)
    worst_ns =
        std::max(worst_ns, std::abs(t.held_ns + t.wait_total_ns + t.released_ns - t.lifetime_ns));
  v.checks.push_back({label + "each thread: held + wait + released",
                      fmt::format("= lifetime ± 1 µs ({} threads)", r.threads.size()),
                      fmt::format("± {:.0f} ns", worst_ns), worst_ns <= 1000});
}

const report::ModuleReport* demo_module(const report::Report& r) {
  for (const report::ModuleReport& m : r.modules.rows)
    if (m.name.rfind("_gilstat_demo", 0) == 0) return &m;
  return nullptr;
}

namespace {

// The demo extension's row, or a failed check saying the table lacks it.
const report::ModuleReport* require_module(const report::Report& r, Verdict& v) {
  if (!r.modules.present) {
    v.checks.push_back({"GIL by module: the probe's table", "present", "missing", false});
    return nullptr;
  }
  const report::ModuleReport* m = demo_module(r);
  if (!m) v.checks.push_back({"GIL by module: _gilstat_demo", "a row", "no row", false});
  return m;
}

}  // namespace

void release_module_checks(const report::Report& r, uint64_t calls, double native_s, Verdict& v) {
  const report::ModuleReport* m = require_module(r, v);
  if (!m) return;
  v.checks.push_back({"_gilstat_demo: GIL releases (PyEval_SaveThread)",
                      fmt::format("{} calls", calls), std::to_string(m->releases),
                      m->releases == calls});
  v.checks.push_back({"_gilstat_demo: GIL re-takes (PyEval_RestoreThread)",
                      fmt::format("{} calls", calls), std::to_string(m->restores),
                      m->restores == calls});
  const double released = m->released_ns / 1e9;
  v.checks.push_back(timing_bound(
      {"_gilstat_demo: time released", fmt::format("≈ native work {} ± 5 %", secs(native_s)),
       secs(released), std::abs(released - native_s) <= 0.05 * native_s}));
}

void hold_module_checks(const report::Report& r, Verdict& v) {
  if (!r.modules.present) {
    v.checks.push_back({"GIL by module: the probe's table", "present", "missing", false});
    return;
  }
  const report::ModuleReport* m = demo_module(r);
  const uint64_t releases = m ? m->releases : 0;
  v.checks.push_back({"_gilstat_demo: GIL releases", "0", std::to_string(releases), releases == 0});
}

void pool_module_checks(const report::Report& r, uint64_t calls, double native_wait_s, Verdict& v) {
  const report::ModuleReport* m = require_module(r, v);
  if (!m) return;
  v.checks.push_back({"_gilstat_demo: callbacks (PyGILState_Ensure)",
                      fmt::format("{} calls", calls), std::to_string(m->callbacks),
                      m->callbacks == calls});
  v.checks.push_back({"_gilstat_demo: PyGILState_Release calls", fmt::format("{} calls", calls),
                      std::to_string(m->callback_releases), m->callback_releases == calls});
  v.notes.push_back(fmt::format("GIL by module: _gilstat_demo made {} callbacks, {:.0f}/s, held {}",
                                m->callbacks, m->callbacks_per_s, secs(m->callback_held_ns / 1e9)));
  const double wait = m->callback_wait_ns / 1e9;
  v.checks.push_back(
      timing_bound({"_gilstat_demo: GIL wait in callbacks",
                    fmt::format("≈ {} (timed natively) ± 10 %", secs(native_wait_s)), secs(wait),
                    std::abs(wait - native_wait_s) <= 0.1 * native_wait_s + 0.002}));
}

}  // namespace gilstat::cli::demo

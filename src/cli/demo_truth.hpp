// The truth side of `gilstat demo`: the ground-truth lines the demo scripts
// print (`gilstat-demo KIND key=value ...`, demo_common.py), and the checks
// that set a measured number next to what it must be.  Pure functions of a
// report and those lines, unit-tested in tests/unit/demo_truth_test.cpp.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "report/report.hpp"

namespace gilstat::cli::demo {

// ---------------------------------------------------------------------------
// Ground truth printed by the scripts.

struct Fact {
  std::string kind;
  std::map<std::string, std::string> fields;

  // Throw gilstat::Error when the field is missing or not a number.
  const std::string& str(const std::string& key) const;
  double num(const std::string& key) const;
  uint32_t tid() const { return static_cast<uint32_t>(num("tid")); }
};

std::vector<Fact> parse_truth(const std::string& text);
// The first fact of a kind; throws gilstat::Error when there is none.
const Fact& one(const std::vector<Fact>& facts, const std::string& kind);
// Every fact of a kind (with that role= when role is given).
std::vector<const Fact*> all(const std::vector<Fact>& facts, const std::string& kind,
                             const std::string& role = {});

// ---------------------------------------------------------------------------
// Checks: one expected number, the measured one, PASS or FAIL.

struct Check {
  std::string what, expected, measured;
  bool pass;
  // A timing bound (a share of wall time, a duration against a native
  // timing): a busy machine can push it out, so `demo --check` may rerun a
  // demo that failed only such bounds.  Everything else is exact and never
  // rerun.
  bool timing = false;
};

// `c` marked as a timing bound.
Check timing_bound(Check c);

std::string pct(double fraction);
std::string secs(double s);

// Shares of a thread's lifetime: timing bounds.
Check near_share(std::string what, double expected, double tol_pp, double measured);
// expected − below_pp ≤ measured ≤ expected + above_pp (percentage points).
Check share_within(std::string what, double expected, double below_pp, double above_pp,
                   double measured);
Check share_at_least(std::string what, double bound, double measured);
Check share_at_most(std::string what, double bound, double measured);

struct Run;

// What one demo found.  An empty `checks` with a `skip` reason is a SKIP.
struct Verdict {
  const Run* shown = nullptr;  // the run whose report the demo is about
  std::vector<Check> checks;
  std::string skip;
  std::vector<std::string> notes;  // measured facts without a pass/fail bound
  double starved = 0;              // share of the timed threads' lifetimes spent waiting for a CPU
  bool passed() const;
  // Failed, and every failed check is a timing bound.
  bool failed_timing_only() const;
};

// ---------------------------------------------------------------------------
// Looking things up in a report.

const report::ThreadReport* find_thread(const report::Report& r, uint32_t tid, uint32_t gil = 0);
// The row of a thread the script says exists; its absence is a failed check.
const report::ThreadReport* require_thread(const report::Report& r, const Fact& f, Verdict& v);
double share(double part_ns, const report::ThreadReport& t);

// The share of the timed threads' lifetimes they spent runnable without a
// CPU, from the run-queue waits the scripts read (schedstat).
double starvation(const std::vector<Fact>& truth, const report::Report& r);

// ---------------------------------------------------------------------------
// The module table ("GIL by module") against the demo extension's truth.

// The demo extension's row (_gilstat_demo*), or nullptr.
const report::ModuleReport* demo_module(const report::Report& r);
// `release`: every busy_sum call is one PyEval_SaveThread (exact), and the
// time released covers the native work (± 5 %, a timing bound).
void release_module_checks(const report::Report& r, uint64_t calls, double native_s, Verdict& v);
// `hold`: the extension never releases the GIL (exact).
void hold_module_checks(const report::Report& r, Verdict& v);
// `pool`: every callback is one PyGILState_Ensure (exact), their rate is
// shown, and the wait inside them is the one timed natively (± 10 %).
void pool_module_checks(const report::Report& r, uint64_t calls, double native_wait_s, Verdict& v);

// What holds by construction in every report, however busy the machine:
// switches == switch_number delta, nothing dropped or impossible, held +
// wait + released == lifetime per thread.  `label` prefixes each check.
void exact_checks(const report::Report& r, const std::string& label, Verdict& v);

}  // namespace gilstat::cli::demo

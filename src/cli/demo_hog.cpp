#include "cli/demo_hog.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <tuple>

#include "report/groups.hpp"
#include "stacks/stack_table.hpp"

namespace gilstat::cli::demo {
namespace {

// What a long-hold stack of hold_for names: the native function and its
// object, the innermost Python frame (the caller).
struct HogNames {
  stacks::Frame native, caller;
  bool operator==(const HogNames& o) const {
    return std::tie(native.function, native.object, caller.function, caller.file, caller.line) ==
           std::tie(o.native.function, o.native.object, o.caller.function, o.caller.file,
                    o.caller.line);
  }
};

const report::HogEntry* hold_for_entry(const report::Report& r, HogNames* names) {
  for (const report::HogEntry& e : r.hogs.entries) {
    std::optional<stacks::Frame> native, caller;
    for (const stacks::Frame& f : e.stack) {
      if (!native && f.kind == stacks::FrameKind::Native &&
          f.function.find("hold_for") != std::string::npos)
        native = f;
      if (!caller && f.kind == stacks::FrameKind::Python) caller = f;
    }
    if (native && caller) {
      *names = {*native, *caller};
      return &e;
    }
  }
  return nullptr;
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// The checks of one run's report; nullopt when it has no long hold in hold_for.
std::optional<HogNames> hog_checks(const Run& run, const std::string& label, Verdict& v) {
  const Fact& truth = one(run.truth, "hog");
  HogNames names;
  const report::HogEntry* e = hold_for_entry(run.report(), &names);
  // The stack is taken while the hold lasts, within the stop budget: a
  // machine busy enough to stretch many turns past the threshold can spend
  // it first, so its absence is a bound to rerun, not an exact failure.
  if (!e) {
    v.checks.push_back(
        timing_bound({label + "long hold in hold_for", "a stack",
                      fmt::format("{} long holds", run.report().hogs.holds), false}));
    return std::nullopt;
  }
  v.checks.push_back({label + "native function", "hold_for in _gilstat_demo",
                      stacks::describe(names.native),
                      names.native.object.rfind("_gilstat_demo", 0) == 0});
  const std::string file = truth.str("file");
  const auto line = static_cast<uint32_t>(truth.num("line"));
  const size_t slash = names.caller.file.rfind('/');
  v.checks.push_back({label + "Python caller",
                      fmt::format("{} ({}:{})", truth.str("caller"), file, line),
                      fmt::format("{} ({}:{})", names.caller.function,
                                  slash == std::string::npos ? names.caller.file
                                                             : names.caller.file.substr(slash + 1),
                                  names.caller.line),
                      ends_with(names.caller.function, truth.str("caller")) &&
                          (names.caller.file == file || ends_with(names.caller.file, "/" + file)) &&
                          names.caller.line == line});
  const double native = truth.num("native_s"), longest = e->longest_ns / 1e9;
  v.checks.push_back(
      timing_bound({label + "longest hold", fmt::format("≈ {} (native) ± 5 %", secs(native)),
                    secs(longest), std::abs(longest - native) <= 0.05 * native}));
  size_t waiters = 0;
  for (const Fact* f : all(run.truth, "thread", "waiter"))
    for (const std::string& w : e->waiting)
      if (w.rfind(f->str("name") + " (", 0) == 0) ++waiters;
  v.checks.push_back({label + "threads kept waiting", "waiter-1, waiter-2",
                      fmt::format("{} of 2", waiters), waiters == 2});
  if (label.empty())
    v.notes.push_back(
        fmt::format("the hold kept the waiters waiting {} in all", secs(e->caused_wait_ns / 1e9)));
  return names;
}

}  // namespace

Verdict hog_demo(Session& s, double) {
  const Run& shown = s.run("hog", {});
  const Run& other = s.run_as("hog", {}, !s.attach());
  Verdict v;
  v.shown = &shown;
  const auto here = hog_checks(shown, "", v);
  const std::string other_mode = s.attach() ? "launched" : "attached";
  const auto there = hog_checks(other, other_mode + ": ", v);
  if (here && there)
    v.checks.push_back({"launched and attached: the same names", "equal",
                        *here == *there ? "equal"
                                        : stacks::describe(there->native) + " ← " +
                                              stacks::describe(there->caller),
                        *here == *there});
  return v;
}

void spin_profile_checks(const Run& run, Verdict& v) {
  const report::Report& r = run.report();
  const report::GilProfile& p = r.gil_profile;
  double held_ns = 0;
  std::string group;
  for (const Fact* f : all(run.truth, "thread"))
    if (const auto* t = find_thread(r, f->tid())) {
      held_ns += t->held_ns;
      group = report::group_key(*t);
    }
  const report::GroupProfile* g = nullptr;
  for (const report::GroupProfile& gp : p.groups)
    if (gp.group == group) g = &gp;
  if (!g || g->functions.empty()) {
    v.checks.push_back({"held-time profile: the spinners", "sampled",
                        fmt::format("{} samples", p.samples), false});
    return;
  }
  // Each thread's samples share its exact held time: the group's profile
  // adds up to the spinners' held time (rounding only).
  v.checks.push_back({"held-time profile: spinners' held time", "= Σ held ± 1 µs",
                      fmt::format("± {:.0f} ns", std::abs(g->held_ns - held_ns)),
                      std::abs(g->held_ns - held_ns) <= 1000});
  const report::ProfileEntry& first = g->functions[0];
  v.checks.push_back({"held-time profile: first function", "spin (the loop)", first.function,
                      ends_with(first.function, "spin")});
  // A sample or two may land in the thread's start or end (µs of Python
  // around the loop): a share of the samples, not of the time.
  v.checks.push_back({"held-time profile: spin's self time", "≥ 97 % of held",
                      pct(held_ns > 0 ? first.self_ns / held_ns : 0),
                      first.self_ns >= 0.97 * held_ns});
}

}  // namespace gilstat::cli::demo

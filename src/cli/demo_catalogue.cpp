#include "cli/demo_catalogue.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "cli/demo_hog.hpp"
#include "common/error.hpp"
#include "report/render_text.hpp"

namespace gilstat::cli::demo {
namespace {

double worker_held_s(const Run& run) {
  double held = 0;
  for (const Fact* f : all(run.truth, "thread"))
    if (const auto* t = find_thread(run.report(), f->tid())) held += t->held_ns / 1e9;
  return held;
}

constexpr double kSpinSeconds = 1.5;

Verdict spin_demo(Session& s, double param) {
  const int n = static_cast<int>(param);
  const Run& run = s.run("spin", {std::to_string(n), fmt::format("{}", kSpinSeconds)});
  Verdict v;
  v.shown = &run;
  const auto& r = run.report();
  if (!r.gils.empty())
    v.checks.push_back(share_at_least("GIL utilisation", 0.95, r.gils[0].utilization));
  const double held = 1.0 / n, waits = (n - 1.0) / n;
  double held_s = 0, cpu_s = 0, released_s = 0, life_s = 0;
  for (const Fact* f : all(run.truth, "thread")) {
    const auto* t = require_thread(r, *f, v);
    if (!t) continue;
    v.checks.push_back(
        near_share(f->str("name") + ": held / lifetime", held, 5, share(t->held_ns, *t)));
    // A spinner never releases the GIL by itself, but after a forced switch
    // CPython's drop_gil() sleeps until the other thread has taken the GIL,
    // and the dropper must then be woken before it asks again: that wake-up
    // is released time, not waiting.  On a virtual machine it can take a
    // millisecond per switch (seen: 15 % of a lifetime with 2.5 % of it in
    // the run queue), so the bound below is wider than above.
    v.checks.push_back(share_within(f->str("name") + ": waiting / lifetime", waits, 20, 5,
                                    share(t->wait_total_ns, *t)));
    held_s += t->held_ns / 1e9;
    released_s += t->released_ns / 1e9;
    life_s += t->lifetime_ns / 1e9;
    cpu_s += f->num("cpu_s");
  }
  v.notes.push_back(
      fmt::format("the spinners used {} of CPU while holding the GIL {}: a Python "
                  "thread runs only while it holds it",
                  secs(cpu_s), secs(held_s)));
  if (life_s > 0 && released_s / life_s >= 0.02)
    v.notes.push_back(fmt::format(
        "the spinners were released {} of their lifetimes: start-up, and being woken after "
        "each forced switch before asking for the GIL again (slow wake-ups shorten the waits)",
        pct(released_s / life_s)));
  spin_profile_checks(run, v);
  return v;
}

std::vector<const Fact*> sum_workers(const Run& run) { return all(run.truth, "thread"); }

// Σ the workers' CPU time / wall time: how many cores the work really got.
double cores_used(const Run& run) {
  double cpu = 0;
  for (const Fact* f : sum_workers(run)) cpu += f->num("cpu_s");
  const double wall = one(run.truth, "sum").num("wall_s");
  return wall > 0 ? cpu / wall : 0;
}

Verdict hold_demo(Session& s, double) {
  const Run& run = s.run("hold", {});
  Verdict v;
  v.shown = &run;
  const auto& r = run.report();
  const auto workers = sum_workers(run);
  double native_total = 0;
  for (const Fact* f : workers) {
    const auto* t = require_thread(r, *f, v);
    if (!t) continue;
    const double native = f->num("native_s");
    native_total += native;
    // The native call is inside the hold, so the hold can only be longer;
    // 1 ms covers the clock reads at either end.
    v.checks.push_back({f->str("name") + ": GIL held",
                        fmt::format("≥ native time {}", secs(native)), secs(t->held_ns / 1e9),
                        t->held_ns / 1e9 >= native - 0.001});
  }
  hold_module_checks(r, v);
  // While one sums, the other can only wait for the GIL (or, right after a
  // forced drop, for a CPU to ask for it again: see the starvation note).
  if (workers.size() == 2)
    for (size_t i = 0; i < 2; ++i) {
      const auto* me = find_thread(r, workers[i]->tid());
      const auto* other = find_thread(r, workers[1 - i]->tid());
      if (me && other)
        v.notes.push_back(fmt::format("{} waited {} for the GIL while {} held it {}",
                                      workers[i]->str("name"), secs(me->wait_total_ns / 1e9),
                                      workers[1 - i]->str("name"), secs(other->held_ns / 1e9)));
    }
  v.notes.push_back(fmt::format("wall time {} for {} of native work: {:.2f} cores used",
                                secs(one(run.truth, "sum").num("wall_s")), secs(native_total),
                                cores_used(run)));
  return v;
}

Verdict release_demo(Session& s, double) {
  const Run& hold = s.run("hold", {});
  const Run& rel = s.run("release", {});
  Verdict v;
  v.shown = &rel;
  const double hold_wall = one(hold.truth, "sum").num("wall_s");
  const double rel_wall = one(rel.truth, "sum").num("wall_s");
  v.checks.push_back(
      timing_bound({"wall time, GIL released", fmt::format("≤ 0.75 × {} (hold)", secs(hold_wall)),
                    secs(rel_wall), rel_wall <= 0.75 * hold_wall}));
  const double hold_held = worker_held_s(hold), rel_held = worker_held_s(rel);
  v.checks.push_back(timing_bound({"workers' GIL held, released",
                                   fmt::format("≤ 5 % of {} (hold)", secs(hold_held)),
                                   secs(rel_held), hold_held > 0 && rel_held <= 0.05 * hold_held}));
  for (const Fact* f : sum_workers(rel)) require_thread(rel.report(), *f, v);
  const Fact& sum = one(rel.truth, "sum");
  double native_s = 0;
  for (const Fact* f : sum_workers(rel)) native_s += f->num("native_s");
  release_module_checks(rel.report(), static_cast<uint64_t>(sum.num("threads") * sum.num("chunks")),
                        native_s, v);
  // Releasing the GIL only allows parallelism; the speed-up needs free cores.
  v.notes.push_back(
      fmt::format("cores used (Σ thread CPU time / wall time): {:.2f} holding, "
                  "{:.2f} releasing",
                  cores_used(hold), cores_used(rel)));
  return v;
}

Verdict pool_demo(Session& s, double param) {
  const int n = static_cast<int>(param);
  const Run& run = s.run("pool", {std::to_string(n), "100"});
  Verdict v;
  v.shown = &run;
  const auto& r = run.report();
  const double interval = one(run.truth, "pool").num("switch_interval_s");
  double native_held = 0, callbacks = 0, callback_wait = 0;
  for (const Fact* f : all(run.truth, "thread", "worker")) {
    callbacks += f->num("calls");
    callback_wait += f->num("native_wait_s");
    const std::string who = fmt::format("native-{}", f->tid());
    const auto* t = find_thread(r, f->tid());
    if (!t) {
      v.checks.push_back({who + " in the report", "present", "missing", false});
      continue;
    }
    v.checks.push_back({fmt::format("tid {}: name", f->tid()), who, t->name, t->name == who});
    const auto calls = static_cast<uint64_t>(f->num("calls"));
    // Every callback is one PyGILState_Ensure, i.e. at least one
    // acquisition; more only if a forced switch hit a callback.
    v.checks.push_back({who + ": acquisitions", fmt::format("≥ {} callbacks", calls),
                        std::to_string(t->acquisitions), t->acquisitions >= calls});
    // The worker times PyGILState_Ensure natively; the GIL wait is inside
    // it (Ensure also creates the thread state).  10 % + 2 ms of slack.
    const double truth_wait = f->num("native_wait_s");
    v.checks.push_back(timing_bound(
        {who + ": waiting", fmt::format("≈ {} (timed natively) ± 10 %", secs(truth_wait)),
         secs(t->wait_total_ns / 1e9),
         std::abs(t->wait_total_ns / 1e9 - truth_wait) <= 0.1 * truth_wait + 0.002}));
    // A busy Python thread gives the GIL up only when a waiter's timed wait
    // of one switch interval expires: that is the typical callback's wait.
    const double p50 = t->wait_ns.p50 / 1e9;
    v.checks.push_back(timing_bound(
        {who + ": wait p50",
         fmt::format("≈ switch interval {} (½× to 2×)",
                     report::format_duration(static_cast<uint64_t>(interval * 1e9))),
         report::format_duration(t->wait_ns.p50), p50 >= 0.5 * interval && p50 <= 2 * interval}));
    native_held += t->held_ns / 1e9;
    v.notes.push_back(fmt::format("{}: {:.0f} acquisitions/s; waited {} to hold {}", who,
                                  t->acquisitions / (t->lifetime_ns / 1e9),
                                  secs(t->wait_total_ns / 1e9), secs(t->held_ns / 1e9)));
  }
  pool_module_checks(r, static_cast<uint64_t>(callbacks), callback_wait, v);
  for (const Fact* f : all(run.truth, "thread", "app")) {
    const auto* t = require_thread(r, *f, v);
    if (!t) continue;
    // After each forced drop the app thread is off the GIL (released while
    // the hand-off completes, then waiting) for longer than the callbacks hold it.
    v.notes.push_back(
        fmt::format("app: held {} of its life; the callbacks' {} of holding cost it {} off the GIL "
                    "({} acquisitions)",
                    pct(share(t->held_ns, *t)), secs(native_held),
                    secs((t->wait_total_ns + t->released_ns) / 1e9), t->acquisitions));
  }
  return v;
}

Verdict io_demo(Session& s, double) {
  const Run& run = s.run("io", {});
  Verdict v;
  v.shown = &run;
  for (const Fact* f : all(run.truth, "thread")) {
    const auto* t = require_thread(run.report(), *f, v);
    if (!t) continue;
    v.checks.push_back(
        share_at_most(f->str("name") + ": held / lifetime", 0.01, share(t->held_ns, *t)));
    v.checks.push_back(
        share_at_least(f->str("name") + ": released / lifetime", 0.98, share(t->released_ns, *t)));
  }
  return v;
}

Verdict duty_demo(Session& s, double p) {
  const Run& run = s.run("duty", {fmt::format("{:g}", p), "1.5"});
  Verdict v;
  v.shown = &run;
  for (const Fact* f : all(run.truth, "thread")) {
    const auto* t = require_thread(run.report(), *f, v);
    if (!t) continue;
    v.checks.push_back(
        near_share(f->str("name") + ": held / lifetime", p / 100, 1, share(t->held_ns, *t)));
    // The native clock reads sit just inside gilstat's acquire and release
    // events: the two must agree to the microseconds per period in between.
    // The thread's few lines of Python around the native call hold the GIL
    // too; one scheduler tick (4 ms at HZ=250) of preemption there on a busy
    // machine is more than 1 % of this run, hence the allowance.
    const double native = f->num("native_held_s"), held = t->held_ns / 1e9;
    v.checks.push_back(
        timing_bound({f->str("name") + ": GIL held",
                      fmt::format("≈ {} (timed natively) ± 1 % + 4 ms", secs(native)), secs(held),
                      std::abs(held - native) <= 0.01 * native + 0.004}));
    v.notes.push_back(fmt::format("native truth: held {} of {} ({}), {} periods overran",
                                  secs(f->num("native_held_s")), secs(f->num("native_elapsed_s")),
                                  pct(f->num("native_held_s") / f->num("native_elapsed_s")),
                                  f->str("overruns")));
  }
  return v;
}

Verdict atomics_demo(Session& s, double) {
  const Run& run = s.run("atomics", {"2", "1.0"});
  Verdict v;
  v.shown = &run;
  const auto& r = run.report();
  const Fact& work = one(run.truth, "atomics");
  v.checks.push_back({"lock-free queue: pushed == popped, same checksum", "yes",
                      work.str("checksum_ok") == "1" ? "yes" : "no",
                      work.str("checksum_ok") == "1"});
  for (const Fact* f : all(run.truth, "thread", "worker")) {
    uint64_t acq = 0;
    for (const auto& t : r.threads)
      if (t.tid == f->tid()) acq += t.acquisitions;
    v.checks.push_back({fmt::format("native worker {}: acquisitions", f->tid()), "0",
                        std::to_string(acq), acq == 0});
  }
  for (const Fact* f : all(run.truth, "thread", "caller")) {
    const auto* t = require_thread(r, *f, v);
    if (!t) continue;
    // Start-up, the call, the return, exit: a handful, none during the work.
    v.checks.push_back({"calling thread: acquisitions", "≤ 5", std::to_string(t->acquisitions),
                        t->acquisitions <= 5});
    v.checks.push_back({"calling thread: released",
                        fmt::format("≥ {} of work", secs(work.num("seconds"))),
                        secs(t->released_ns / 1e9), t->released_ns / 1e9 >= work.num("seconds")});
  }
  v.notes.push_back(fmt::format("{} counter increments and {} queue transfers without the GIL",
                                work.str("increments"), work.str("popped")));
  return v;
}

Verdict subinterp_demo(Session& s, double) {
  const Run& run = s.run("subinterp", {"2", "1.0"});
  Verdict v;
  for (const auto& f : run.truth)
    if (f.kind == "unsupported") {
      v.skip = fmt::format("needs Python {}+ (this is {})", f.str("needs"), f.str("python"));
      return v;  // nothing to show: the script did nothing
    }
  v.shown = &run;
  const auto& r = run.report();
  const auto interps = all(run.truth, "thread");
  if (r.gils.size() < 1 + interps.size()) {
    v.skip = "not yet supported: only the main GIL is tracked";
    return v;
  }
  auto serves = [](const report::GilReport& g, int64_t interp) {
    return std::find(g.interpreters.begin(), g.interpreters.end(), interp) != g.interpreters.end();
  };
  for (const Fact* f : interps) {
    const auto interp = static_cast<int64_t>(f->num("interp"));
    const report::GilReport* gil = nullptr;
    for (const auto& g : r.gils)
      if (serves(g, interp)) gil = &g;
    if (!gil || serves(*gil, 0)) {  // interpreter 0 is the main one
      v.checks.push_back({fmt::format("interpreter {}: own GIL", interp), "yes", "no", false});
      continue;
    }
    v.checks.push_back({fmt::format("interpreter {}: own GIL", interp), "yes",
                        fmt::format("GIL {}", gil->id), true});
    const auto* t = find_thread(r, f->tid(), gil->id);
    if (!t) {
      v.checks.push_back({f->str("name") + " on its GIL", "present", "missing", false});
      continue;
    }
    // Alone on its GIL: it never waits, so it holds it almost all the time.
    v.checks.push_back(share_at_least(f->str("name") + ": held / lifetime on its GIL", 0.9,
                                      share(t->held_ns, *t)));
  }
  for (const Fact* f : all(run.truth, "interp"))
    v.notes.push_back(fmt::format("interpreter {} counted to {} on its own thread", f->str("id"),
                                  f->str("iterations")));
  return v;
}

}  // namespace

double parse_param(const Demo& d, const std::vector<std::string>& words) {
  const Param& p = d.param;
  if (words.size() > (p.usage.empty() ? 0u : 1u))
    throw Error(fmt::format("demo {} takes {}", d.name,
                            p.usage.empty() ? "no arguments" : "one argument, " + p.usage),
                "see `gilstat demo --list`", kExitUsage);
  if (words.empty()) return p.fallback;
  char* end = nullptr;
  const double v = std::strtod(words[0].c_str(), &end);
  if (end == words[0].c_str() || *end != '\0' || v < p.low || v > p.high ||
      (p.integer && v != std::floor(v)))
    throw Error(fmt::format("{} must be {} from {:g} to {:g}, not '{}'", p.what,
                            p.integer ? "a whole number" : "a number", p.low, p.high, words[0]),
                "see `gilstat demo --list`", kExitUsage);
  return v;
}

const std::vector<Demo>& demos() {
  static const std::vector<Demo> table = {
      // 2 by default: on a 2-core machine the point is plainest (two threads,
      // two cores, one core's work), and with fewer threads woken every switch
      // interval the numbers are least disturbed by a busy machine.
      {"spin",
       {"[N]", "the number of threads", 2, 1, 16, true},
       "N pure-Python threads (default 2) count in a loop for 1.5 s",
       "pure-Python threads take turns: the GIL is always busy and each runs only 1/N of "
       "the time, so threads add no CPU parallelism to Python code",
       spin_demo},
      {"hold",
       {},
       "2 threads run native CPU work that keeps the GIL (the forgotten release)",
       "native code that keeps the GIL serialises every thread behind it: two cores, one "
       "core's work",
       hold_demo},
      {"release",
       {},
       "the same native work releasing the GIL (Py_BEGIN_ALLOW_THREADS)",
       "release the GIL around native work (Py_BEGIN_ALLOW_THREADS, PyO3's allow_threads) and "
       "threads really run in parallel",
       release_demo},
      {"pool",
       {"[THREADS]", "the number of pool threads", 2, 1, 16, true},
       "native worker threads (default 2) call back into Python (PyGILState_Ensure) while a "
       "Python thread is busy",
       "every callback from a native thread first waits for the GIL, typically a whole switch "
       "interval (5 ms) for a fraction of a millisecond of Python: batch callbacks",
       pool_demo},
      {"io",
       {},
       "threads blocked in time.sleep and socket reads",
       "blocking I/O releases the GIL: I/O-bound threads cost the GIL nothing",
       io_demo},
      {"duty",
       {"[P]", "the duty percentage", 25, 1, 90},
       "one thread holds the GIL natively P % (default 25) of every 10 ms period, else sleeps",
       "gilstat's held share is exact: it matches a hold timed natively to within a percent",
       duty_demo},
      {"atomics",
       {},
       "native threads share lock-free counters and a queue with the GIL released",
       "work that never touches Python objects needs no GIL: release it once and the "
       "threads never meet it again",
       atomics_demo},
      {"subinterp",
       {},
       "Python 3.12+: two isolated interpreters, each with its own GIL, both busy",
       "isolated subinterpreters each have their own GIL: pure-Python code in them runs in "
       "parallel",
       subinterp_demo},
      {"hog",
       {},
       "a native call keeps the GIL 200 ms while two threads wait (launched and attached)",
       "a long hold's stack names who kept the GIL: the native function, its module and the "
       "Python line that called it",
       hog_demo},
  };
  return table;
}

const Demo& find_demo(const std::string& name) {
  for (const auto& d : demos())
    if (d.name == name) return d;
  std::string names;
  for (const auto& d : demos()) names += (names.empty() ? "" : ", ") + d.name;
  throw Error(fmt::format("unknown demo '{}'", name),
              fmt::format("demos: {} (`gilstat demo --list` describes them)", names), kExitUsage);
}

}  // namespace gilstat::cli::demo

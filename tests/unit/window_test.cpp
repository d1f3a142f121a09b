// Reports over part of a recording (`report --since/--until`), the
// forced-switch latency, and the findings drawn from a report.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <sstream>

#include "event_sim.hpp"
#include "report/aggregator.hpp"
#include "report/findings.hpp"
#include "report/render_json.hpp"

namespace gilstat::report {
namespace {

using testing::EventScript;
using testing::SimTruth;

RecordingInfo info(uint64_t start, uint64_t end) {
  RecordingInfo i;
  i.pid = 1;
  i.window_start = start;
  i.window_end = end;
  return i;
}

Report run(const EventScript& s, const SimTruth& truth, TimeWindow w, uint64_t start,
           uint64_t end) {
  Aggregator agg(w);
  s.deliver_by_thread(agg);
  GilInfo gil{0, 0x1000, 10, 10 + truth.switch_number_delta, truth.initial_holder, {0}};
  return agg.finish(info(start, end), {gil});
}

std::map<uint32_t, const ThreadReport*> by_tid(const Report& r) {
  std::map<uint32_t, const ThreadReport*> m;
  for (const auto& t : r.threads) m[t.tid] = &t;
  return m;
}

std::string json(const Report& r) {
  std::ostringstream out;
  render_json(r, out);
  return out.str();
}

TEST(Window, TheWholeWindowChangesNothing) {
  EventScript s;
  const SimTruth truth = testing::simulate_gil(s, 3, 4, 3000);
  Aggregator plain;
  s.deliver_by_thread(plain);
  GilInfo gil{0, 0x1000, 10, 10 + truth.switch_number_delta, truth.initial_holder, {0}};
  const Report a = plain.finish(info(1000, truth.window_end), {gil});
  const Report b = run(s, truth, TimeWindow{0, UINT64_MAX}, 1000, truth.window_end);
  EXPECT_EQ(json(a), json(b));
  EXPECT_TRUE(a.gils[0].switch_number_known);
}

TEST(Window, AdjacentWindowsAddUpToTheirUnion) {
  for (uint64_t seed : {1, 2, 3, 4, 5}) {
    EventScript s;
    const SimTruth truth = testing::simulate_gil(s, seed, 4, 2000);
    const uint64_t lo = 1000, hi = truth.window_end;
    const uint64_t mid = lo + (hi - lo) * (seed + 2) / 9;
    const Report whole = run(s, truth, {lo, hi}, lo, hi);
    const Report a = run(s, truth, {lo, mid}, lo, mid);
    const Report b = run(s, truth, {mid, hi}, mid, hi);
    const Report plain = run(s, truth, {}, lo, hi);
    auto tw = by_tid(whole), ta = by_tid(a), tb = by_tid(b), tp = by_tid(plain);
    for (const auto& [tid, t] : tw) {
      // All events lie inside [lo, hi]: the same as no window at all.
      EXPECT_DOUBLE_EQ(t->held_ns, tp[tid]->held_ns);
      EXPECT_DOUBLE_EQ(t->wait_total_ns, tp[tid]->wait_total_ns);
      EXPECT_EQ(t->acquisitions, tp[tid]->acquisitions);
      const auto part = [&](const std::map<uint32_t, const ThreadReport*>& m,
                            double ThreadReport::*f) {
        auto it = m.find(tid);
        return it == m.end() ? 0.0 : it->second->*f;
      };
      EXPECT_DOUBLE_EQ(part(ta, &ThreadReport::held_ns) + part(tb, &ThreadReport::held_ns),
                       t->held_ns)
          << tid;
      EXPECT_DOUBLE_EQ(
          part(ta, &ThreadReport::wait_total_ns) + part(tb, &ThreadReport::wait_total_ns),
          t->wait_total_ns);
      EXPECT_DOUBLE_EQ(part(ta, &ThreadReport::released_ns) + part(tb, &ThreadReport::released_ns),
                       t->released_ns);
      EXPECT_DOUBLE_EQ(part(ta, &ThreadReport::lifetime_ns) + part(tb, &ThreadReport::lifetime_ns),
                       t->lifetime_ns);
      // A hold crossing `mid` is counted on both sides.
      const uint64_t acq =
          (ta.count(tid) ? ta[tid]->acquisitions : 0) + (tb.count(tid) ? tb[tid]->acquisitions : 0);
      EXPECT_GE(acq, t->acquisitions);
      EXPECT_LE(acq, t->acquisitions + 1);
    }
    // Per window: the parts of every thread's life add up, holds never
    // overlap, and the GIL's hold count is its acquisitions.
    for (const Report* r : {&a, &b}) {
      for (const auto& t : r->threads)
        EXPECT_NEAR(t.held_ns + t.wait_total_ns + t.released_ns, t.lifetime_ns, 1e-6) << t.tid;
      ASSERT_EQ(r->gils.size(), 1u);
      const GilReport& g = r->gils[0];
      EXPECT_FALSE(g.switch_number_known);
      EXPECT_EQ(g.hold_ns.count, g.acquisitions);
      double held = 0;
      for (const auto& t : r->threads) held += t.held_ns;
      EXPECT_NEAR(held, static_cast<double>(g.hold_ns.total), 1.0);
      EXPECT_LE(g.utilization, 1.0 + 1e-9);
    }
    EXPECT_EQ(a.gils[0].hold_ns.total + b.gils[0].hold_ns.total, whole.gils[0].hold_ns.total);
  }
}

TEST(Window, ThreadsOutsideTheWindowHaveNoRow) {
  EventScript s;
  s.wait_begin(1, 100);
  s.acquire(1, 110, 0xA);
  s.release(1, 200, 0xA);
  s.wait_begin(2, 500);
  s.acquire(2, 510, 0xB);
  s.release(2, 600, 0xB);
  Aggregator agg(TimeWindow{400, 700});
  s.deliver_by_thread(agg);
  const Report r = agg.finish(info(400, 700), {});
  ASSERT_EQ(r.threads.size(), 1u);
  EXPECT_EQ(r.threads[0].tid, 2u);
  EXPECT_DOUBLE_EQ(r.threads[0].held_ns, 90);
  EXPECT_EQ(r.gils[0].acquisitions, 1u);
  EXPECT_NEAR(r.gils[0].utilization, 90.0 / 300.0, 1e-12);
}

TEST(DropLatency, RequestToReleaseOfTheHolder) {
  EventScript s;
  s.wait_begin(1, 90);
  s.acquire(1, 100, 0xA);
  s.wait_begin(2, 150);
  s.drop_request(2, 200, 0xA);
  s.drop_request(3, 230, 0xA);  // a second request in the same hold: the first counts
  s.release(1, 260, 0xA);
  s.forced_handoff(1, 261);
  s.acquire(2, 270, 0xB);
  s.drop_request(1, 300, 0xB);  // still holding at the end: counted up to it
  Aggregator agg;
  s.deliver_by_thread(agg, true);
  const Report r = agg.finish(info(0, 1000), {});
  const GilReport& g = r.gils[0];
  EXPECT_EQ(g.drop_latency_ns.count, 2u);
  EXPECT_EQ(g.drop_latency_ns.max, 700u);
  EXPECT_EQ(g.forced_switch_requests, 3u);
  for (const auto& t : r.threads) {
    if (t.tid == 1) {
      EXPECT_EQ(t.drop_latency_ns.max, 60u);
    }
    if (t.tid == 2) {
      EXPECT_EQ(t.drop_latency_ns.max, 700u);
    }
  }
}

bool has(const std::vector<Finding>& fs, const std::string& id) {
  return std::any_of(fs.begin(), fs.end(), [&](const Finding& f) { return f.id == id; });
}

ThreadReport thread(uint32_t tid, std::string name, double life_s, double held_s, double wait_s,
                    uint64_t acq) {
  ThreadReport t;
  t.tid = tid;
  t.name = std::move(name);
  t.lifetime_ns = life_s * 1e9;
  t.held_ns = held_s * 1e9;
  t.wait_total_ns = wait_s * 1e9;
  t.released_ns = t.lifetime_ns - t.held_ns - t.wait_total_ns;
  t.acquisitions = acq;
  return t;
}

TEST(Findings, EachDiagnosisAppearsWhenItsNumbersDo) {
  Report r;
  r.duration_s = 10;
  GilReport g;
  g.utilization = 0.99;
  g.mean_waiting_threads = 0.71;
  g.acquisitions = 500'000;
  g.switches = 10;
  g.switch_number_delta = 10;
  r.gils.push_back(g);
  r.threads.push_back(thread(1, "worker", 10, 3, 6, 300));        // starved
  r.threads.push_back(thread(2, "native-2", 10, 3, 1, 400'000));  // 40,000/s
  r.threads.push_back(thread(3, "hog", 10, 3.9, 0.1, 100));
  r.threads[2].drop_latency_ns.count = 4;
  r.threads[2].drop_latency_ns.max = 80'000'000;           // 80 ms after the request
  r.threads.push_back(thread(4, "gilstat", 10, 0, 9, 5));  // the probe's own: never a finding
  r.threads.back().own = true;
  auto fs = find_findings(r);
  EXPECT_TRUE(has(fs, "starved_thread"));
  EXPECT_TRUE(has(fs, "hot_reacquire"));
  EXPECT_TRUE(has(fs, "ignores_drop_requests"));
  EXPECT_FALSE(has(fs, "busy_gil"));  // 0.71 threads waiting on average
  EXPECT_FALSE(has(fs, "drops"));
  for (const Finding& f : fs) {
    EXPECT_EQ(f.text.find("gilstat "), std::string::npos) << f.text;
    if (f.id == "hot_reacquire") {
      EXPECT_NE(f.text.find("40,000 times a second"), std::string::npos) << f.text;
    }
    if (f.id == "starved_thread") {
      EXPECT_NE(f.text.find("worker (60.0 %)"), std::string::npos) << f.text;
    }
  }

  r.gils[0].mean_waiting_threads = 1.3;
  r.drops = 5;
  r.recording.truncated = true;
  fs = find_findings(r);
  EXPECT_TRUE(has(fs, "busy_gil"));
  EXPECT_TRUE(has(fs, "drops"));
  EXPECT_TRUE(has(fs, "truncated"));

  Report idle;
  idle.duration_s = 1;
  GilReport quiet;
  quiet.utilization = 0.05;
  quiet.acquisitions = 10;
  idle.gils.push_back(quiet);
  fs = find_findings(idle);
  EXPECT_TRUE(has(fs, "idle_gil"));
  EXPECT_FALSE(has(fs, "starved_thread"));
  EXPECT_FALSE(has(fs, "gil_enabled"));

  // Free-threaded, off for 0.6 s then on for good: said; not "idle".
  idle.gils[0].disabled_ns = 0.6e9;
  idle.gils[0].enabled_changes = {{0, 0}, {0.6e9, 1}, {0.61e9, kEnabledForGood}};
  fs = find_findings(idle);
  EXPECT_TRUE(has(fs, "gil_enabled"));
  EXPECT_FALSE(has(fs, "idle_gil"));
  for (const Finding& f : fs) {
    if (f.id == "gil_enabled") {
      EXPECT_NE(f.text.find("disabled for 600 ms, then enabled at 0.600 s for good"),
                std::string::npos)
          << f.text;
    }
  }
  idle.gils[0].enabled_changes.resize(2);
  idle.gils[0].enabled_changes.push_back({0.62e9, 0});  // off again at the end: nothing to say
  EXPECT_FALSE(has(find_findings(idle), "gil_enabled"));
}

}  // namespace
}  // namespace gilstat::report

// The aggregator against hand-computed and independently simulated truths.
// Assertions are on invariants and numbers, never on rendered text.
#include "report/aggregator.hpp"

#include <gtest/gtest.h>

#include <cmath>

#include "event_sim.hpp"
#include "report/gil_stream.hpp"

namespace gilstat::report {
namespace {

using testing::EventScript;
using testing::SimTruth;

constexpr uint32_t kA = 11, kB = 12, kC = 13;
constexpr uint64_t kTsA = 0xA0, kTsB = 0xB0, kTsC = 0xC0;

RecordingInfo info_for(uint64_t window_start, uint64_t window_end, double ns_per_tick = 1.0) {
  RecordingInfo info;
  info.pid = 4242;
  info.gilstat_version = "test";
  info.command = "python3 app.py";
  info.ns_per_tick = ns_per_tick;
  info.python_version = "3.11.7";
  info.window_start = window_start;
  info.window_end = window_end;
  return info;
}

GilInfo gil_info(uint64_t initial_holder, uint64_t initial_sn, uint64_t final_sn) {
  return GilInfo{0, 0x7f00'0000'1000, initial_sn, final_sn, initial_holder, {0}};
}

const ThreadReport& row(const Report& r, uint32_t tid, uint32_t gil = 0) {
  for (const ThreadReport& t : r.threads)
    if (t.tid == tid && t.gil == gil) return t;
  throw std::runtime_error("no such thread row");
}

// The invariants every report must satisfy when no event was lost.
void expect_invariants(const Report& r, double ns_per_tick = 1.0) {
  for (const GilReport& g : r.gils) {
    double threads_hold = 0;
    uint64_t threads_acq = 0;
    for (const ThreadReport& t : r.threads) {
      if (t.gil != g.id) continue;
      threads_hold += t.held_ns;
      threads_acq += t.acquisitions;
    }
    EXPECT_NEAR(threads_hold, static_cast<double>(g.hold_ns.total), 1.0) << "gil " << g.id;
    EXPECT_EQ(threads_acq, g.acquisitions);
    EXPECT_EQ(g.hold_ns.count, g.acquisitions);
    EXPECT_EQ(g.seq_gaps, 0u);
    EXPECT_EQ(g.anomalies, 0u);
  }
  for (const ThreadReport& t : r.threads) {
    EXPECT_NEAR(t.held_ns + t.wait_total_ns + t.released_ns, t.lifetime_ns, ns_per_tick) << t.name;
    EXPECT_EQ(t.anomalies, 0u) << t.name;
    EXPECT_NEAR(static_cast<double>(t.hold_ns.total), t.held_ns, 1.0) << t.name;
    EXPECT_NEAR(static_cast<double>(t.wait_ns.total), t.wait_total_ns, 1.0) << t.name;
  }
}

// Three threads: A holds, B and C contend, B's timed wait asks A to drop
// (forced hand-off), a spurious lock/unlock by B, A re-takes its own GIL, and
// at the window end A still holds while B still waits.  Numbers by hand:
//   A: wait 1+20+1 = 22, hold 24+9+38 = 71, released 6+1 = 7, lifetime 0..100
//   B: wait 25+30 = 55, hold 10, released 15+1+14 = 30, lifetime 5..100
//   C: wait 32, hold 8, lifetime 10..50
//   GIL: holds 89 of a 100-tick window; switches A->B->C->A (A's re-take is
//   not one); hand-offs 5, 2, 1 (A->A is not a hand-off).
EventScript contended_script() {
  EventScript s;
  s.wait_begin(kA, 0);
  s.acquire(kA, 1, kTsA);
  s.wait_begin(kB, 5);
  s.wait_begin(kC, 10);
  s.drop_request(kB, 20, kTsA);
  s.release(kA, 25, kTsA);
  s.forced_handoff(kA, 26);
  s.acquire(kB, 30, kTsB);
  s.wait_begin(kA, 31);
  s.release(kB, 40, kTsB);
  s.acquire(kC, 42, kTsC);
  s.release(kC, 50, kTsC);
  s.acquire(kA, 51, kTsA);
  s.wait_begin(kB, 55);
  s.wait_abort(kB, 56);
  s.release(kA, 60, kTsA);
  s.wait_begin(kA, 61);
  s.acquire(kA, 62, kTsA);
  s.wait_begin(kB, 70);
  return s;
}

void expect_contended_numbers(const Report& r) {
  ASSERT_EQ(r.gils.size(), 1u);
  const GilReport& g = r.gils[0];
  EXPECT_EQ(g.acquisitions, 5u);
  EXPECT_EQ(g.switches, 3u);
  EXPECT_EQ(g.switch_number_delta, 3);
  EXPECT_EQ(g.forced_switch_requests, 1u);
  EXPECT_EQ(g.forced_handoffs, 1u);
  EXPECT_EQ(g.hold_ns.total, 89u);
  EXPECT_EQ(g.hold_ns.max, 38u);
  EXPECT_DOUBLE_EQ(g.utilization, 0.89);
  EXPECT_EQ(g.handoff_ns.count, 3u);
  EXPECT_EQ(g.handoff_ns.total, 8u);
  EXPECT_EQ(g.handoff_ns.max, 5u);
  EXPECT_EQ(g.wait_ns.count, 6u);
  EXPECT_EQ(g.wait_ns.total, 22u + 55u + 32u);
  EXPECT_EQ(g.wait_ns.max, 32u);

  const ThreadReport& a = row(r, kA);
  EXPECT_EQ(a.held_ns, 71);
  EXPECT_EQ(a.wait_total_ns, 22);
  EXPECT_EQ(a.released_ns, 7);
  EXPECT_EQ(a.lifetime_ns, 100);
  EXPECT_EQ(a.acquisitions, 3u);
  EXPECT_EQ(a.forced_handoffs, 1u);
  const ThreadReport& b = row(r, kB);
  EXPECT_EQ(b.held_ns, 10);
  EXPECT_EQ(b.wait_total_ns, 55);
  EXPECT_EQ(b.released_ns, 30);
  EXPECT_EQ(b.lifetime_ns, 95);
  EXPECT_EQ(b.wait_ns.count, 2u);  // the aborted wait is not a wait
  const ThreadReport& c = row(r, kC);
  EXPECT_EQ(c.held_ns, 8);
  EXPECT_EQ(c.wait_total_ns, 32);
  EXPECT_EQ(c.released_ns, 0);
  EXPECT_EQ(c.lifetime_ns, 40);

  // Sorted by held time, busiest first.
  ASSERT_EQ(r.threads.size(), 3u);
  EXPECT_EQ(r.threads[0].tid, kA);
  EXPECT_EQ(r.threads[1].tid, kB);
  EXPECT_EQ(r.threads[2].tid, kC);
  expect_invariants(r);
}

TEST(Aggregator, ContendedThreadsInThreadOrder) {
  Aggregator agg;
  contended_script().deliver_by_thread(agg);
  expect_contended_numbers(agg.finish(info_for(0, 100), {gil_info(kTsA, 10, 13)}));
}

TEST(Aggregator, ContendedThreadsReverseThreadOrder) {
  Aggregator agg;
  contended_script().deliver_by_thread(agg, /*reverse=*/true);
  expect_contended_numbers(agg.finish(info_for(0, 100), {gil_info(kTsA, 10, 13)}));
}

TEST(Aggregator, ContendedThreadsRandomInterleavings) {
  for (uint64_t seed = 0; seed < 50; ++seed) {
    Aggregator agg;
    contended_script().deliver_interleaved(agg, seed);
    SCOPED_TRACE(seed);
    expect_contended_numbers(agg.finish(info_for(0, 100), {gil_info(kTsA, 10, 13)}));
  }
}

// A free-threaded GIL: disabled at arming (the probe thread says so), two
// brief transient spells' worth of history, then enabled for good while
// thread A runs.  GilEnabled events are about the GIL: they add no thread row
// and no time to anyone.
EventScript enabled_midway_script(uint32_t probe_tid) {
  EventScript s;
  s.set_own_thread(probe_tid);
  s.gil_enabled(probe_tid, 0, 0);
  s.gil_enabled(kB, 10, 1);  // a module of unknown safety initialising...
  s.wait_begin(kB, 10);
  s.acquire(kB, 11, kTsB);
  s.release(kB, 12, kTsB);
  s.gil_enabled(kB, 12, 0);  // ...that turned out to be safe
  s.gil_enabled(kA, 40, 1);
  s.wait_begin(kA, 40);
  s.acquire(kA, 41, kTsA);
  s.gil_enabled(probe_tid, 45, kEnabledForGood);  // no lock taken: the probe thread sees it
  s.release(kA, 60, kTsA);
  s.wait_begin(kA, 70);
  s.acquire(kA, 71, kTsA);
  return s;
}

TEST(Aggregator, GilEnabledMidwayHasItsHistoryAndNoThreadRow) {
  constexpr uint32_t kProbe = 99;
  const EventScript s = enabled_midway_script(kProbe);
  for (bool reverse : {false, true}) {
    Aggregator agg;
    s.deliver_by_thread(agg, reverse);
    const Report r = agg.finish(info_for(0, 100), {gil_info(0, 0, 2)});
    expect_invariants(r);
    ASSERT_EQ(r.gils.size(), 1u);
    const GilReport& g = r.gils[0];
    EXPECT_EQ(g.disabled_ns, 10 + (40 - 12));
    ASSERT_EQ(g.enabled_changes.size(), 5u);
    const std::pair<double, uint32_t> want[] = {
        {0, 0}, {10, 1}, {12, 0}, {40, 1}, {45, kEnabledForGood}};
    for (size_t i = 0; i < 5; ++i) {
      EXPECT_EQ(g.enabled_changes[i].at_ns, want[i].first) << i;
      EXPECT_EQ(g.enabled_changes[i].enabled, want[i].second) << i;
    }
    EXPECT_EQ(g.acquisitions, 3u);
    EXPECT_EQ(g.switches, 2u);
    ASSERT_EQ(r.threads.size(), 2u);  // A and B; nothing for the probe thread
    EXPECT_EQ(row(r, kA).lifetime_ns, 60);
    EXPECT_EQ(row(r, kA).held_ns, 19 + 29);
    EXPECT_EQ(row(r, kB).lifetime_ns, 2);
  }
}

TEST(Aggregator, GilEnabledHistoryIsCutToTheWindow) {
  const EventScript s = enabled_midway_script(99);
  const TimeWindow window{20, 50};
  Aggregator agg(window);
  s.deliver_in_time_order(agg);
  const Report r = agg.finish(info_for(20, 50), {gil_info(0, 0, 2)});
  ASSERT_EQ(r.gils.size(), 1u);
  const GilReport& g = r.gils[0];
  EXPECT_EQ(g.disabled_ns, 40 - 20);  // disabled since 12, i.e. at the window's start
  ASSERT_EQ(g.enabled_changes.size(), 3u);
  EXPECT_EQ(g.enabled_changes[0].at_ns, 0);
  EXPECT_EQ(g.enabled_changes[0].enabled, 0u);
  EXPECT_EQ(g.enabled_changes[1].at_ns, 40 - 20);
  EXPECT_EQ(g.enabled_changes[2].at_ns, 45 - 20);
  EXPECT_EQ(g.enabled_changes[2].enabled, kEnabledForGood);
}

TEST(Aggregator, GilBuildHasNoEnabledHistory) {
  Aggregator agg;
  contended_script().deliver_by_thread(agg);
  const Report r = agg.finish(info_for(0, 100), {gil_info(0, 0, 3)});
  ASSERT_EQ(r.gils.size(), 1u);
  EXPECT_TRUE(r.gils[0].enabled_changes.empty());
  EXPECT_EQ(r.gils[0].disabled_ns, 0);
}

TEST(Aggregator, FirstAcquisitionIsComparedWithTheHolderAtArming) {
  Aggregator agg;
  contended_script().deliver_by_thread(agg);
  // Nobody (tstate 0) held it when the probe armed: A's first take is a switch.
  const Report r = agg.finish(info_for(0, 100), {gil_info(0, 10, 14)});
  EXPECT_EQ(r.gils[0].switches, 4u);
}

TEST(Aggregator, FinishIsRepeatableAndDoesNotConsumeState) {
  Aggregator agg;
  contended_script().deliver_by_thread(agg, true);
  const Report first = agg.finish(info_for(0, 100), {gil_info(kTsA, 10, 13)});
  const Report second = agg.finish(info_for(0, 100), {gil_info(kTsA, 10, 13)});
  EXPECT_EQ(first.gils[0].hold_ns.total, second.gils[0].hold_ns.total);
  EXPECT_EQ(first.gils[0].acquisitions, second.gils[0].acquisitions);
  expect_contended_numbers(second);
}

TEST(Aggregator, SecondWaitBeginCountsTheFirstSegmentAsReleased) {
  EventScript s;
  s.wait_begin(kA, 0);
  s.wait_begin(kA, 10);  // the first lock(mutex) was not a wait for the GIL
  s.acquire(kA, 15, kTsA);
  s.release(kA, 20, kTsA);
  Aggregator agg;
  s.deliver_by_thread(agg);
  const Report r = agg.finish(info_for(0, 20), {gil_info(kTsA, 0, 0)});
  const ThreadReport& a = row(r, kA);
  EXPECT_EQ(a.released_ns, 10);
  EXPECT_EQ(a.wait_total_ns, 5);
  EXPECT_EQ(a.wait_ns.count, 1u);
  EXPECT_EQ(a.held_ns, 5);
  expect_invariants(r);
}

TEST(Aggregator, UnexpectedTransitionsCountAnomaliesAndAddNoTime) {
  EventScript s;
  s.acquire(kA, 100, kTsA);  // first event: the probe armed mid-take (expected)
  s.release(kA, 150, kTsA);
  s.release(kA, 160, kTsA);  // not holding
  s.wait_abort(kA, 170);     // not waiting
  Aggregator agg;
  s.deliver_by_thread(agg);
  const Report r = agg.finish(info_for(0, 200), {gil_info(kTsA, 0, 0)});
  const ThreadReport& a = row(r, kA);
  EXPECT_EQ(a.anomalies, 2u);
  EXPECT_EQ(a.held_ns, 50);
  EXPECT_EQ(a.acquisitions, 1u);
  EXPECT_EQ(a.lifetime_ns, 70);
  // The check that catches lost time does catch it here.
  EXPECT_LT(a.held_ns + a.wait_total_ns + a.released_ns, a.lifetime_ns);
  EXPECT_EQ(r.gils[0].anomalies, 1u);  // the second Release had no hold
  EXPECT_EQ(r.gils[0].hold_ns.total, 50u);
}

TEST(Aggregator, HoldOpenAtWindowEndIsClosedThere) {
  EventScript s;
  s.wait_begin(kA, 10);
  s.acquire(kA, 12, kTsA);
  Aggregator agg;
  s.deliver_by_thread(agg);
  const Report r = agg.finish(info_for(0, 1000), {gil_info(kTsA, 0, 0)});
  const ThreadReport& a = row(r, kA);
  EXPECT_EQ(a.held_ns, 988);
  EXPECT_EQ(a.lifetime_ns, 990);  // extended to the window end
  EXPECT_EQ(a.hold_ns.count, 1u);
  EXPECT_EQ(r.gils[0].hold_ns.total, 988u);
  EXPECT_DOUBLE_EQ(r.gils[0].utilization, 0.988);
  expect_invariants(r);
}

TEST(Aggregator, LostDropRequestIsASeqGapOnly) {
  EventScript s = contended_script();
  ASSERT_TRUE(s.lose_first([](const proto::Event& ev) {
    return ev.kind == static_cast<uint8_t>(proto::EventKind::DropRequest);
  }));
  Aggregator agg;
  s.deliver_by_thread(agg, true);
  const Report r = agg.finish(info_for(0, 100), {gil_info(kTsA, 10, 13)});
  const GilReport& g = r.gils[0];
  EXPECT_EQ(g.seq_gaps, 1u);
  EXPECT_EQ(g.seq_stale, 0u);
  EXPECT_EQ(g.forced_switch_requests, 0u);
  EXPECT_EQ(g.switches, 3u);
  EXPECT_EQ(g.acquisitions, 5u);
  EXPECT_EQ(g.hold_ns.total, 89u);
}

TEST(Aggregator, LostAcquireShowsAsGapAndSwitchMismatch) {
  EventScript s = contended_script();
  ASSERT_TRUE(s.lose_first([](const proto::Event& ev) {
    return ev.kind == static_cast<uint8_t>(proto::EventKind::Acquire) && ev.value == kTsC;
  }));
  Aggregator agg;
  s.deliver_interleaved(agg, 3);
  const Report r = agg.finish(info_for(0, 100), {gil_info(kTsA, 10, 13)});
  const GilReport& g = r.gils[0];
  EXPECT_EQ(g.seq_gaps, 1u);
  EXPECT_EQ(g.acquisitions, 4u);
  EXPECT_NE(g.switches, static_cast<uint64_t>(g.switch_number_delta));
  EXPECT_GE(g.anomalies, 1u);  // C's Release without its Acquire
}

TEST(Aggregator, SmallReorderBufferSkipsGapsWhileStreaming) {
  EventScript s;
  const SimTruth truth = testing::simulate_gil(s, 99, 3, 3000);
  ASSERT_TRUE(s.lose_first([](const proto::Event& ev) {
    return ev.kind == static_cast<uint8_t>(proto::EventKind::DropRequest);
  }));
  Aggregator agg(/*reorder_limit=*/4);
  s.deliver_in_time_order(agg);  // in seq order: only the lost one is missing
  const Report r = agg.finish(info_for(1000, truth.window_end),
                              {gil_info(truth.initial_holder, 0, truth.switch_number_delta)});
  const GilReport& g = r.gils[0];
  EXPECT_EQ(g.seq_gaps, 1u);
  EXPECT_EQ(g.seq_stale, 0u);
  EXPECT_EQ(g.forced_switch_requests, truth.drop_requests - 1);
  EXPECT_EQ(g.switches, truth.switch_number_delta);
  EXPECT_EQ(g.hold_ns.total, truth.hold_total);
}

TEST(Aggregator, EventsLaterThanTheReorderBufferAreStaleNotDoubleCounted) {
  EventScript s;
  const SimTruth truth = testing::simulate_gil(s, 5, 3, 2000);
  Aggregator agg(/*reorder_limit=*/8);
  s.deliver_by_thread(agg);  // whole rings: far more reordering than 8 entries
  const Report r = agg.finish(info_for(1000, truth.window_end),
                              {gil_info(truth.initial_holder, 0, truth.switch_number_delta)});
  const GilReport& g = r.gils[0];
  EXPECT_GT(g.seq_gaps, 0u);
  // Nothing was lost, so every skipped seq arrives later and is refused.
  EXPECT_EQ(g.seq_gaps, g.seq_stale);
  EXPECT_LT(g.acquisitions, truth.acquisitions);
}

// Random 2-4 thread histories, delivered in random ring-drain orders: every
// number must match the simulation's own bookkeeping.
TEST(Aggregator, RandomHistoriesMatchSimulation) {
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    SCOPED_TRACE(seed);
    EventScript s;
    const int threads = 2 + static_cast<int>(seed % 3);
    const SimTruth truth = testing::simulate_gil(s, seed, threads, 2000);
    Aggregator agg;
    s.deliver_interleaved(agg, seed * 31);
    const Report r = agg.finish(info_for(1000, truth.window_end),
                                {gil_info(truth.initial_holder, 7, 7 + truth.switch_number_delta)});
    ASSERT_EQ(r.gils.size(), 1u);
    const GilReport& g = r.gils[0];
    EXPECT_EQ(g.acquisitions, truth.acquisitions);
    EXPECT_EQ(g.switches, truth.switch_number_delta);
    EXPECT_EQ(g.switches, static_cast<uint64_t>(g.switch_number_delta));
    EXPECT_EQ(g.forced_switch_requests, truth.drop_requests);
    EXPECT_EQ(g.forced_handoffs, truth.forced_handoffs);
    EXPECT_EQ(g.hold_ns.total, truth.hold_total);
    EXPECT_DOUBLE_EQ(g.utilization, static_cast<double>(truth.hold_total) /
                                        static_cast<double>(truth.window_end - 1000));
    for (const auto& [tid, held] : truth.held) EXPECT_EQ(row(r, tid).held_ns, held) << tid;
    for (const auto& [tid, wait] : truth.wait) EXPECT_EQ(row(r, tid).wait_total_ns, wait) << tid;
    expect_invariants(r);
  }
}

TEST(Aggregator, TscTicksAreConvertedToNanoseconds) {
  EventScript s;
  const SimTruth truth = testing::simulate_gil(s, 77, 4, 1000);
  Aggregator agg;
  s.deliver_interleaved(agg, 1);
  constexpr double kNsPerTick = 0.37;
  RecordingInfo info = info_for(1000, truth.window_end, kNsPerTick);
  info.clock = proto::ClockKind::Tsc;
  const Report r = agg.finish(info, {gil_info(truth.initial_holder, 0, truth.switch_number_delta)});
  const GilReport& g = r.gils[0];
  EXPECT_NEAR(static_cast<double>(g.hold_ns.total), truth.hold_total * kNsPerTick, 1.0);
  EXPECT_NEAR(r.duration_s, (truth.window_end - 1000) * kNsPerTick / 1e9, 1e-12);
  // Utilization is a ratio: the unit does not change it.
  EXPECT_DOUBLE_EQ(g.utilization, static_cast<double>(truth.hold_total) /
                                      static_cast<double>(truth.window_end - 1000));
  for (const auto& [tid, held] : truth.held)
    EXPECT_NEAR(row(r, tid).held_ns, held * kNsPerTick, 1e-6);
  expect_invariants(r, kNsPerTick);
}

TEST(Aggregator, UtilizationAboveOneIsReportedRaw) {
  EventScript s;
  s.wait_begin(kA, 0);
  s.acquire(kA, 0, kTsA);
  s.release(kA, 300, kTsA);
  Aggregator agg;
  s.deliver_by_thread(agg);
  // A window shorter than the hold inside it: a broken clock or window.
  const Report r = agg.finish(info_for(100, 200), {gil_info(kTsA, 0, 0)});
  EXPECT_DOUBLE_EQ(r.gils[0].utilization, 3.0);
}

TEST(Aggregator, NamesOwnThreadAndDrops) {
  EventScript s;
  s.wait_begin(kA, 0);
  s.acquire(kA, 1, kTsA);
  s.release(kA, 2, kTsA);
  s.wait_begin(kB, 3);
  s.acquire(kB, 4, kTsB);
  s.release(kB, 9, kTsB);
  s.wait_begin(kC, 10);
  s.acquire(kC, 11, kTsC);
  s.release(kC, 14, kTsC);
  s.set_own_thread(kC);
  Aggregator agg;
  s.deliver_by_thread(agg);
  agg.set_thread_name(kA, "MainThread");
  agg.set_thread_name(kC, "would-be-overridden");
  agg.add_thread_drops(kA, 3);
  agg.add_thread_drops(kA, 2);
  agg.add_thread_drops(999, 7);  // a thread whose events were all lost
  RecordingInfo info = info_for(0, 20);
  info.drops_no_ring = 4;
  const Report r = agg.finish(info, {gil_info(kTsA, 0, 2)});
  EXPECT_EQ(row(r, kA).name, "MainThread");
  EXPECT_FALSE(row(r, kA).own);
  EXPECT_EQ(row(r, kA).drops, 5u);
  EXPECT_EQ(row(r, kB).name, "native-12");
  EXPECT_EQ(row(r, kC).name, "gilstat");
  EXPECT_TRUE(row(r, kC).own);
  EXPECT_EQ(r.drops, 5u + 7u + 4u);
  EXPECT_EQ(r.drops_no_ring, 4u);
}

TEST(Aggregator, OneRowPerThreadAndGil) {
  EventScript s;
  s.wait_begin(kA, 0, 0);
  s.acquire(kA, 1, kTsA, 0);
  s.release(kA, 5, kTsA, 0);
  s.wait_begin(kA, 6, 1);  // the same OS thread in an own-GIL subinterpreter
  s.acquire(kA, 7, 0xD0, 1);
  s.release(kA, 17, 0xD0, 1);
  Aggregator agg;
  s.deliver_by_thread(agg);
  GilInfo second = gil_info(0xD0, 0, 0);
  second.index = 1;
  second.interp_ids = {1};
  const Report r = agg.finish(info_for(0, 20), {gil_info(kTsA, 0, 0), second});
  ASSERT_EQ(r.gils.size(), 2u);
  ASSERT_EQ(r.threads.size(), 2u);
  EXPECT_EQ(row(r, kA, 0).held_ns, 4);
  EXPECT_EQ(row(r, kA, 1).held_ns, 10);
  EXPECT_EQ(r.threads[0].gil, 1u);  // more held time first
  EXPECT_EQ(r.gils[1].hold_ns.total, 10u);
  EXPECT_EQ(r.gils[1].interpreters, std::vector<int64_t>{1});
  expect_invariants(r);
}

TEST(Aggregator, GilKnownButSilentStillReported) {
  Aggregator agg;
  const Report r = agg.finish(info_for(0, 20), {gil_info(kTsA, 5, 9)});
  ASSERT_EQ(r.gils.size(), 1u);
  EXPECT_EQ(r.gils[0].acquisitions, 0u);
  EXPECT_EQ(r.gils[0].switch_number_delta, 4);  // a mismatch the renderer must show
  EXPECT_TRUE(r.threads.empty());
}

TEST(GilStream, SeqWrapsAroundThirtyTwoBits) {
  GilStream stream(16, 0xFFFF'FFFEull);
  const auto ev = [](uint32_t seq, proto::EventKind kind, uint64_t ts, uint64_t tstate) {
    return proto::Event{ts, tstate, seq, static_cast<uint8_t>(kind), 0, 0};
  };
  // Delivered out of order across the wrap: 0xFFFFFFFE, 0xFFFFFFFF, 0, 1.
  stream.add(2, ev(0, proto::EventKind::Acquire, 30, kTsB));
  stream.add(1, ev(0xFFFF'FFFF, proto::EventKind::Release, 20, kTsA));
  stream.add(1, ev(0xFFFF'FFFE, proto::EventKind::Acquire, 10, kTsA));
  stream.add(2, ev(1, proto::EventKind::Release, 45, kTsB));
  const GilTimes t = stream.finish(100);
  EXPECT_EQ(t.acquisitions, 2u);
  EXPECT_EQ(t.seq_gaps, 0u);
  EXPECT_EQ(t.seq_stale, 0u);
  EXPECT_EQ(t.switches(kTsA), 1u);
  EXPECT_TRUE(t.hold_hist.total() == 25);
  EXPECT_EQ(t.handoff_hist.max(), 10u);
}

TEST(Aggregator, GilEnabledChangesBeyondTheLimitAreCountedNotHidden) {
  EventScript s;
  s.set_own_thread(99);
  constexpr uint32_t kToggles = 5000;  // more than the 4096 kept
  for (uint32_t i = 0; i < kToggles; ++i) s.gil_enabled(99, i, i % 2);
  Aggregator agg;
  s.deliver_in_time_order(agg);
  const Report r = agg.finish(info_for(0, 2 * kToggles), {gil_info(0, 0, 0)});
  ASSERT_EQ(r.gils.size(), 1u);
  EXPECT_EQ(r.gils[0].enabled_changes.size() + r.gils[0].enabled_changes_lost, kToggles);
  EXPECT_EQ(r.gils[0].enabled_changes_lost, kToggles - 4096);
}

}  // namespace
}  // namespace gilstat::report

namespace gilstat::report {
namespace {

// The hold running at the window's end is the live view's current holder:
// who, and for how long up to the end; nobody once it was released.
TEST(AggregatorHolder, OpenHoldIsTheCurrentHolder) {
  EventScript s;
  s.acquire(kA, 100, kTsA);
  s.release(kA, 200, kTsA);
  s.wait_begin(kB, 150);
  s.acquire(kB, 210, kTsB);
  Aggregator agg;
  s.deliver_by_thread(agg);
  const Report held = agg.finish(info_for(0, 1000, 2.0), {gil_info(kTsA, 0, 2)});
  ASSERT_EQ(held.gils.size(), 1u);
  EXPECT_EQ(held.gils[0].holder_tid, kB);
  EXPECT_DOUBLE_EQ(held.gils[0].holder_for_ns, (1000 - 210) * 2.0);

  EventScript again = s;
  again.release(kB, 300, kTsB);
  Aggregator agg2;
  again.deliver_by_thread(agg2);
  const Report free = agg2.finish(info_for(0, 1000), {gil_info(kTsA, 0, 2)});
  EXPECT_EQ(free.gils[0].holder_tid, 0u);
  EXPECT_EQ(free.gils[0].holder_for_ns, 0.0);
}

}  // namespace
}  // namespace gilstat::report

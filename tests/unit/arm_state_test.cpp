// The state at the arm: a thread met mid-hold or mid-wait counts from the
// arm, both when it later changes state (its first event says what it was
// doing) and while it has not (declared from outside); the exact totals
// get the same stretch, so held + wait + released == lifetime stays exact.
#include <gtest/gtest.h>

#include "report/aggregator.hpp"
#include "report/findings.hpp"
#include "report/stuck_hint.hpp"

namespace gilstat::report {
namespace {

using proto::EventKind;

proto::Event ev(EventKind kind, uint64_t ts, uint32_t seq = 0) {
  return proto::Event{ts, 0x77, seq, static_cast<uint8_t>(kind), 0, 0};
}

RecordingInfo info(uint64_t start, uint64_t end, bool exact) {
  RecordingInfo i;
  i.pid = 1;
  i.window_start = start;
  i.window_end = end;
  i.totals_exact = exact;
  return i;
}

GilInfo armed_gil(uint64_t arm_ts, std::vector<std::pair<uint32_t, uint8_t>> at_arm = {}) {
  GilInfo g{0, 0x1000, 0, 0, 0x77, {0}};
  g.arm_ts = arm_ts;
  g.at_arm = std::move(at_arm);
  return g;
}

const ThreadReport* row(const Report& r, uint32_t tid) {
  for (const auto& t : r.threads)
    if (t.tid == tid) return &t;
  return nullptr;
}

void expect_exact(const ThreadReport& t) {
  EXPECT_DOUBLE_EQ(t.held_ns + t.wait_total_ns + t.released_ns, t.lifetime_ns);
}

TEST(ArmState, AFirstReleaseMeansHeldSinceTheArm) {
  Aggregator agg;
  agg.add_event(10, 0, ev(EventKind::Release, 1500, 1));
  agg.add_event(10, 0, ev(EventKind::WaitBegin, 1700));
  agg.add_event(11, 0, ev(EventKind::Acquire, 1600, 2));  // asleep in take_gil at the arm
  const Report r = agg.finish(info(1000, 2000, false), {armed_gil(1000)});
  const ThreadReport* a = row(r, 10);
  const ThreadReport* b = row(r, 11);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->at_attach, "holding");
  EXPECT_DOUBLE_EQ(a->held_ns, 500);
  EXPECT_DOUBLE_EQ(a->released_ns, 200);
  EXPECT_DOUBLE_EQ(a->wait_total_ns, 300);
  EXPECT_DOUBLE_EQ(a->lifetime_ns, 1000);
  EXPECT_EQ(a->acquisitions, 0u);  // acquired before the arm: not one of the window's
  EXPECT_EQ(b->at_attach, "waiting");
  EXPECT_DOUBLE_EQ(b->wait_total_ns, 600);
  EXPECT_DOUBLE_EQ(b->held_ns, 400);
  EXPECT_DOUBLE_EQ(b->lifetime_ns, 1000);
}

TEST(ArmState, AFirstWaitBeginStartsTheLifetimeThere) {
  Aggregator agg;
  agg.add_event(10, 0, ev(EventKind::WaitBegin, 1500));
  const Report r = agg.finish(info(1000, 2000, false), {armed_gil(1000)});
  ASSERT_TRUE(row(r, 10));
  EXPECT_EQ(row(r, 10)->at_attach, "");
  EXPECT_DOUBLE_EQ(row(r, 10)->lifetime_ns, 500);
}

TEST(ArmState, DeclaredThreadsCountUpToTheWindowsEnd) {
  // A stuck process: the holder never releases, the waiter never acquires;
  // the waiter's only events are forced-switch requests.
  Aggregator agg;
  agg.add_event(11, 0, ev(EventKind::DropRequest, 1100, 1));
  const GilInfo g = armed_gil(1000, {{10, kArmHolds}, {11, kArmWaits}});
  for (uint64_t end : {3000u, 9000u}) {
    const Report r = agg.finish(info(1000, end, true), {g});
    const ThreadReport* h = row(r, 10);
    const ThreadReport* w = row(r, 11);
    ASSERT_TRUE(h && w);
    EXPECT_DOUBLE_EQ(h->held_ns, end - 1000.0);
    EXPECT_DOUBLE_EQ(w->wait_total_ns, end - 1000.0);
    expect_exact(*h);
    expect_exact(*w);
    EXPECT_EQ(h->at_attach, "holding");
    EXPECT_EQ(w->at_attach, "waiting");
    ASSERT_EQ(r.gils.size(), 1u);
    EXPECT_EQ(r.gils[0].holder_tid, 10u);
    EXPECT_TRUE(r.gils[0].holder_since_attach);
    EXPECT_DOUBLE_EQ(r.gils[0].holder_for_ns, end - 1000.0);
    EXPECT_EQ(r.gils[0].waiting_now, 1u);
    EXPECT_DOUBLE_EQ(r.gils[0].utilization, 1.0);
    EXPECT_EQ(r.gils[0].switches, 0u);
  }
}

TEST(ArmState, EventsOverrideWhatWasDeclared) {
  // Declared holding, but its first event is a WaitBegin: it was not.
  Aggregator agg;
  agg.add_event(10, 0, ev(EventKind::WaitBegin, 1500));
  const Report r =
      agg.finish(info(1000, 2000, false), {armed_gil(1000, {{10, kArmHolds}, {12, 9}})});
  ASSERT_TRUE(row(r, 10));
  EXPECT_EQ(row(r, 10)->at_attach, "");
  EXPECT_DOUBLE_EQ(row(r, 10)->held_ns, 0);
  EXPECT_EQ(row(r, 12), nullptr);  // an unknown role is ignored
  EXPECT_EQ(r.gils[0].holder_tid, 0u);
}

TEST(ArmState, ExactTotalsGetTheSameStretch) {
  Aggregator agg;
  agg.add_event(10, 0, ev(EventKind::Release, 1500, 1));
  ExactTotals t;  // the probe's: its lifetime starts at the release
  t.tid = 10;
  t.lifetime = 0;
  agg.add_thread_totals(t);
  const Report r = agg.finish(info(1000, 2000, true), {armed_gil(1000)});
  ASSERT_TRUE(row(r, 10));
  EXPECT_DOUBLE_EQ(row(r, 10)->held_ns, 500);
  EXPECT_DOUBLE_EQ(row(r, 10)->lifetime_ns, 500);
  expect_exact(*row(r, 10));
}

TEST(ArmState, AHoldOverFiveSecondsWithWaitersPointsToDump) {
  Aggregator agg;
  agg.set_thread_name(10, "holder");
  const GilInfo g = armed_gil(1000, {{10, kArmHolds}, {11, kArmWaits}});
  const auto stuck_findings = [&](uint64_t end) {
    size_t n = 0;
    for (const Finding& f : find_findings(agg.finish(info(1000, end, true), {g})))
      if (f.id == "gil_stuck") {
        ++n;
        EXPECT_NE(f.text.find("holder (tid 10)"), std::string::npos) << f.text;
        EXPECT_NE(f.text.find("since before attach"), std::string::npos) << f.text;
        EXPECT_NE(f.text.find("`gilstat dump --pid 1`"), std::string::npos) << f.text;
      }
    return n;
  };
  EXPECT_EQ(stuck_findings(1000 + 4'900'000'000ull), 0u);
  EXPECT_EQ(stuck_findings(1000 + 5'100'000'000ull), 1u);
  // Nobody waiting: a long hold alone is not a stuck program.
  const GilInfo alone = armed_gil(1000, {{10, kArmHolds}});
  const Report r = agg.finish(info(1000, 1000 + 9'000'000'000ull, true), {alone});
  EXPECT_FALSE(stuck_hint(r, r.gils[0]));
}

}  // namespace
}  // namespace gilstat::report

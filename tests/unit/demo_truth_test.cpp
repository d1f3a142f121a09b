// The truth checks of `gilstat demo` (src/cli/demo_truth.cpp) on synthetic
// reports: each check passes on a report that satisfies it and fails on one
// that does not, so that `demo --check` cannot pass a broken measurement.
#include "cli/demo_truth.hpp"

#include <gtest/gtest.h>

#include "common/error.hpp"

namespace gilstat::cli::demo {
namespace {

report::ThreadReport row(uint32_t tid, double held, double wait, double released, double lifetime) {
  report::ThreadReport t;
  t.tid = tid;
  t.name = "t" + std::to_string(tid);
  t.held_ns = held;
  t.wait_total_ns = wait;
  t.released_ns = released;
  t.lifetime_ns = lifetime;
  return t;
}

// Two threads on one GIL whose numbers satisfy every exact check.
report::Report consistent() {
  report::Report r;
  report::GilReport g;
  g.id = 0;
  g.switches = 120;
  g.switch_number_delta = 120;
  g.switch_number_known = true;
  r.gils.push_back(g);
  r.threads.push_back(row(11, 600e6, 300e6, 100e6, 1000e6));
  r.threads.push_back(row(12, 300e6, 600e6, 50e6, 950e6));
  return r;
}

const Check& named(const Verdict& v, const std::string& part) {
  for (const auto& c : v.checks)
    if (c.what.find(part) != std::string::npos) return c;
  ADD_FAILURE() << "no check named *" << part << "*";
  static const Check none{};
  return none;
}

TEST(DemoTruth, ParsesOnlyTaggedLines) {
  const auto facts = parse_truth(
      "hello\n"
      "gilstat-demo thread tid=42 name=spin-0 runq_s=0.25\n"
      "gilstat-demo\n"
      "gilstat-demo sum wall_s=1.5 junk\n"
      "not gilstat-demo thread tid=1\n");
  ASSERT_EQ(facts.size(), 2u);
  EXPECT_EQ(facts[0].kind, "thread");
  EXPECT_EQ(facts[0].tid(), 42u);
  EXPECT_EQ(facts[0].str("name"), "spin-0");
  EXPECT_DOUBLE_EQ(one(facts, "sum").num("wall_s"), 1.5);
  EXPECT_EQ(all(facts, "thread").size(), 1u);
  EXPECT_TRUE(all(facts, "thread", "worker").empty());
}

TEST(DemoTruth, MissingOrMalformedFactsAreErrors) {
  const auto facts = parse_truth("gilstat-demo thread tid=4x2\n");
  EXPECT_THROW(facts[0].tid(), Error);
  EXPECT_THROW(facts[0].str("name"), Error);
  EXPECT_THROW(one(facts, "sum"), Error);
}

TEST(DemoTruth, ShareBoundsPassAndFail) {
  EXPECT_TRUE(near_share("x", 0.5, 5, 0.54).pass);
  EXPECT_FALSE(near_share("x", 0.5, 5, 0.56).pass);
  EXPECT_FALSE(near_share("x", 0.5, 5, 0.44).pass);
  EXPECT_TRUE(share_at_least("x", 0.95, 0.95).pass);
  EXPECT_FALSE(share_at_least("x", 0.95, 0.949).pass);
  EXPECT_TRUE(share_at_most("x", 0.01, 0.01).pass);
  EXPECT_FALSE(share_at_most("x", 0.01, 0.011).pass);
  EXPECT_EQ(near_share("x", 0.5, 5, 0.54).expected, "50.0 % ± 5 pp");
  EXPECT_TRUE(share_within("x", 0.5, 20, 5, 0.30).pass);
  EXPECT_TRUE(share_within("x", 0.5, 20, 5, 0.55).pass);
  EXPECT_FALSE(share_within("x", 0.5, 20, 5, 0.29).pass);
  EXPECT_FALSE(share_within("x", 0.5, 20, 5, 0.56).pass);
  EXPECT_EQ(share_within("x", 0.5, 20, 5, 0.4).expected, "50.0 % −20/+5 pp");
  EXPECT_EQ(share_at_least("x", 0.95, 0.5).measured, "50.0 %");
}

TEST(DemoTruth, OnlyTimingBoundsMayBeRerun) {
  Verdict v;
  exact_checks(consistent(), "", v);
  v.checks.push_back(near_share("x", 0.5, 5, 0.5));
  EXPECT_TRUE(v.passed());
  EXPECT_FALSE(v.failed_timing_only());  // nothing failed: nothing to rerun

  v.checks.push_back(share_at_least("y", 0.9, 0.5));
  v.checks.push_back(timing_bound({"wall time", "≤ 1 s", "2 s", false}));
  EXPECT_FALSE(v.passed());
  EXPECT_TRUE(v.failed_timing_only());

  report::Report r = consistent();
  r.drops = 3;  // an exact check fails as well: no rerun
  exact_checks(r, "again: ", v);
  EXPECT_FALSE(v.failed_timing_only());

  Verdict count;
  count.checks.push_back({"callbacks", "≥ 100", "99", false});  // not marked: exact
  EXPECT_FALSE(count.failed_timing_only());
}

TEST(DemoTruth, RequireThreadFailsForAMissingThread) {
  const report::Report r = consistent();
  const auto facts = parse_truth(
      "gilstat-demo thread tid=11 name=a\n"
      "gilstat-demo thread tid=99 name=b\n");
  Verdict v;
  EXPECT_NE(require_thread(r, facts[0], v), nullptr);
  EXPECT_TRUE(v.checks.empty());
  EXPECT_EQ(require_thread(r, facts[1], v), nullptr);
  ASSERT_EQ(v.checks.size(), 1u);
  EXPECT_FALSE(v.checks[0].pass);
  EXPECT_FALSE(v.checks[0].timing);
  EXPECT_FALSE(v.passed());
  EXPECT_EQ(find_thread(r, 11, 1), nullptr);  // another GIL's row
}

TEST(DemoTruth, StarvationIsRunQueueTimeOverLifetime) {
  const report::Report r = consistent();
  const auto facts = parse_truth(
      "gilstat-demo thread tid=11 runq_s=0.1\n"
      "gilstat-demo thread tid=12 runq_s=0.095\n"
      "gilstat-demo thread tid=77 runq_s=5\n");  // not in the report: ignored
  EXPECT_NEAR(starvation(facts, r), 0.195 / 1.95, 1e-12);
  EXPECT_EQ(starvation({}, r), 0);
}

TEST(DemoTruth, ExactChecksPassOnAConsistentReport) {
  Verdict v;
  exact_checks(consistent(), "", v);
  EXPECT_EQ(v.checks.size(), 3u);
  EXPECT_TRUE(v.passed());
  for (const auto& c : v.checks) EXPECT_FALSE(c.timing) << c.what;
}

TEST(DemoTruth, SwitchesMustEqualSwitchNumber) {
  report::Report r = consistent();
  r.gils[0].switches = 119;
  Verdict v;
  exact_checks(r, "hold 2: ", v);
  EXPECT_FALSE(named(v, "hold 2: GIL 0: switches").pass);
  EXPECT_FALSE(v.passed());

  r = consistent();
  r.gils[0].switch_number_known = false;  // not comparable is not a pass
  Verdict unknown;
  exact_checks(r, "", unknown);
  EXPECT_FALSE(named(unknown, "switches").pass);
}

TEST(DemoTruth, DropsGapsAndAnomaliesFail) {
  for (int which = 0; which < 4; ++which) {
    report::Report r = consistent();
    if (which == 0) r.drops = 1;
    if (which == 1) r.gils[0].seq_gaps = 1;
    if (which == 2) r.gils[0].seq_stale = 1;
    if (which == 3) r.gils[0].anomalies = 1;
    Verdict v;
    exact_checks(r, "", v);
    const Check& c = named(v, "events dropped");
    EXPECT_FALSE(c.pass) << which;
    EXPECT_EQ(c.measured, "1") << which;
  }
}

TEST(DemoTruth, HeldWaitReleasedMustAddUpToLifetime) {
  report::Report r = consistent();
  r.threads[1].released_ns += 999;  // rounding: within 1 µs
  Verdict v;
  exact_checks(r, "", v);
  EXPECT_TRUE(named(v, "held + wait + released").pass);

  r.threads[1].released_ns += 2;  // 1001 ns off
  Verdict off;
  exact_checks(r, "", off);
  EXPECT_FALSE(named(off, "held + wait + released").pass);
  EXPECT_EQ(named(off, "held + wait + released").measured, "± 1001 ns");
}

}  // namespace
}  // namespace gilstat::cli::demo

// Long holds: the merged stack (native frames above the eval loop, then the
// Python frames), and the counter's holds, their ends and the waiting they
// caused, from samples and events in a recording's order.
#include "report/hogs.hpp"

#include <gtest/gtest.h>

#include "report/modules.hpp"
#include "report/report.hpp"
#include "stacks/merge.hpp"
#include "stacks/stack_table.hpp"

namespace gilstat {
namespace {

using stacks::Frame;
using stacks::FrameKind;

Frame native(const std::string& fn, const std::string& object) {
  return Frame{FrameKind::Native, fn, {}, 0, object, 0x10};
}
Frame py(const std::string& fn) { return Frame{FrameKind::Python, fn, "app.py", 3, {}, 0}; }

TEST(MergeStacks, NativeAboveTheEvalLoopThenPython) {
  const std::vector<Frame> n = {native("spin_until", "_demo.so"), native("hold_for", "_demo.so"),
                                native("cfunction_call", "python3.12"),
                                native("_PyEval_EvalFrameDefault", "python3.12"),
                                native("main", "python3.12")};
  const std::vector<Frame> p = {py("hog_caller"), py("main")};
  const auto m = stacks::merge_stacks(n, p, "python3.12");
  ASSERT_EQ(m.size(), 5u);
  EXPECT_EQ(m[0].function, "spin_until");
  EXPECT_EQ(m[2].function, "cfunction_call");
  EXPECT_EQ(m[3].function, "hog_caller");
  EXPECT_EQ(m[4].function, "main");
  EXPECT_EQ(m[4].kind, FrameKind::Python);
}

TEST(MergeStacks, StrippedInterpreterCutsAtItsFirstFrameBelowAnotherObject) {
  const std::vector<Frame> n = {native("hold_for", "_demo.so"), native("", "python3.11"),
                                native("", "python3.11")};
  const auto m = stacks::merge_stacks(n, {py("hog_caller")}, "python3.11");
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].function, "hold_for");
  EXPECT_EQ(m[1].function, "hog_caller");
  // All in the interpreter: its innermost frame stays.
  const auto own = stacks::merge_stacks({native("", "python3.11"), native("", "python3.11")},
                                        {py("f")}, "python3.11");
  ASSERT_EQ(own.size(), 2u);
  EXPECT_EQ(own[0].kind, FrameKind::Native);
  EXPECT_EQ(stacks::merge_stacks(n, {}, "python3.11").size(), 3u);
}

proto::Event ev(proto::EventKind kind, uint64_t ts) {
  proto::Event e{};
  e.ts = ts;
  e.kind = static_cast<uint8_t>(kind);
  return e;
}

TEST(HogCounter, HoldEndAndCausedWaitingFromEvents) {
  stacks::StackTable table;
  const uint32_t a = *table.stack_id({*table.frame_id(py("a"))});
  const uint32_t b = *table.stack_id({*table.frame_id(py("b"))});
  report::HogCounter c;
  // Thread 1 holds from 1000; stacks at 1100 (a) and 1300 (b); released at 1400.
  c.add_sample({1, 0, 1100, a, stacks::SampleReason::LongHold, 1000});
  c.add_sample({1, 0, 1300, b, stacks::SampleReason::LongHold, 1000});
  c.add_sample({1, 0, 1300, a, stacks::SampleReason::Profile, 0});  // not a long hold
  // Thread 2 waits 900..1400 (400 overlap), thread 3 waits 1200..1450 (200), its
  // acquire read before the holder's release.
  const proto::Event w3[] = {ev(proto::EventKind::WaitBegin, 1200),
                             ev(proto::EventKind::Acquire, 1450)};
  c.add_events(3, w3, 2);
  const proto::Event h1[] = {ev(proto::EventKind::Release, 1400)};
  c.add_events(1, h1, 1);
  const proto::Event w2[] = {ev(proto::EventKind::WaitBegin, 900),
                             ev(proto::EventKind::Acquire, 1400)};
  c.add_events(2, w2, 2);
  report::Report r;
  report::ThreadReport t2;
  t2.tid = 2;
  t2.name = "w";
  r.threads.push_back(t2);
  const report::HogsReport h = c.finish(r, table, 5000);
  EXPECT_EQ(h.holds, 1u);
  EXPECT_EQ(h.samples, 2u);
  EXPECT_DOUBLE_EQ(h.held_ns, 400);
  EXPECT_DOUBLE_EQ(h.caused_wait_ns, 600);
  ASSERT_EQ(h.entries.size(), 2u);
  // a: 1000..1300, b: 1300..1400; waiting split in the same shares.
  EXPECT_DOUBLE_EQ(h.entries[0].held_ns, 300);
  EXPECT_DOUBLE_EQ(h.entries[0].caused_wait_ns, 450);
  EXPECT_DOUBLE_EQ(h.entries[1].held_ns, 100);
  EXPECT_DOUBLE_EQ(h.entries[0].longest_ns, 400);
  EXPECT_EQ(h.entries[0].holds, 1u);
  ASSERT_EQ(h.entries[0].waiting.size(), 2u);
  EXPECT_EQ(h.entries[0].waiting[0], "3");
  EXPECT_EQ(h.entries[0].waiting[1], "w (2)");
}

TEST(HogCounter, OpenHoldEndsAtTheWindowEnd) {
  stacks::StackTable table;
  const uint32_t a = *table.stack_id({*table.frame_id(py("a"))});
  report::HogCounter c;
  c.add_sample({1, 0, 1100, a, stacks::SampleReason::LongHold, 1000});
  const report::HogsReport h = c.finish(report::Report{}, table, 3000);
  ASSERT_EQ(h.entries.size(), 1u);
  EXPECT_DOUBLE_EQ(h.entries[0].longest_ns, 2000);
  EXPECT_DOUBLE_EQ(h.caused_wait_ns, 0);
}

TEST(HogCounter, EachHoldIsChargedToTheModuleItEndedIn) {
  stacks::StackTable table;
  auto stack = [&](std::vector<Frame> frames) {
    std::vector<uint32_t> ids;
    for (const Frame& f : frames) ids.push_back(*table.frame_id(f));
    return *table.stack_id(ids);
  };
  const uint32_t in_demo = stack({native("spin", "_demo.so"), native("", "libfoo.so"),
                                  native("cfunction_call", "python3.12"), py("f")});
  const uint32_t in_python = stack({native("_PyEval_EvalFrameDefault", "python3.12"), py("g")});
  const uint32_t in_libc = stack({native("memcpy", "libc.so.6"), py("h")});
  report::HogCounter c;
  // Thread 1: 1000..1500, seen in Python first, then in _demo.so (it ended there).
  c.add_sample({1, 0, 1100, in_python, stacks::SampleReason::LongHold, 1000});
  c.add_sample({1, 0, 1300, in_demo, stacks::SampleReason::LongHold, 1000});
  const proto::Event r1[] = {ev(proto::EventKind::Release, 1500)};
  c.add_events(1, r1, 1);
  // Thread 2: 2000..2100 in Python; thread 3: 3000..3300 in libc (hooks nothing).
  c.add_sample({2, 0, 2050, in_python, stacks::SampleReason::LongHold, 2000});
  const proto::Event r2[] = {ev(proto::EventKind::Release, 2100)};
  c.add_events(2, r2, 1);
  c.add_sample({3, 0, 3100, in_libc, stacks::SampleReason::LongHold, 3000});
  const proto::Event r3[] = {ev(proto::EventKind::Release, 3300)};
  c.add_events(3, r3, 1);
  const report::HogsReport h = c.finish(report::Report{}, table, 5000);
  ASSERT_EQ(h.holds, 3u);
  report::ModuleTable t;
  t.rows.resize(2);
  t.rows[0].name = "libfoo.so";  // on the stack, outside the innermost module frame
  t.rows[1].name = "_demo.so";
  report::charge_long_holds(t, h);
  EXPECT_EQ(t.rows[1].long_holds, 1u);
  EXPECT_DOUBLE_EQ(t.rows[1].long_held_ns, 500);  // the whole hold, not its part there
  EXPECT_EQ(t.rows[0].long_holds, 0u);
  EXPECT_EQ(t.interpreter_long_holds, 2u);
  EXPECT_DOUBLE_EQ(t.interpreter_long_held_ns, 400);
  // Every hold is charged once.
  EXPECT_DOUBLE_EQ(t.rows[1].long_held_ns + t.interpreter_long_held_ns, h.held_ns);
}

}  // namespace
}  // namespace gilstat

// The held-time profile: samples share their thread's exact held time, the
// folded stacks add up to every thread's held time, and frames, stacks and
// samples survive a recording (and a damaged one cannot break the tables).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <sstream>
#include <string>

#include "proto/recording.hpp"
#include "report/gil_profile.hpp"
#include "report/render_json.hpp"
#include "report/render_profile.hpp"
#include "report/report.hpp"
#include "stacks/stack_table.hpp"

namespace gilstat {
namespace {

using stacks::Frame;
using stacks::FrameKind;

Frame py(const std::string& fn, const std::string& file, uint32_t line) {
  return Frame{FrameKind::Python, fn, file, line, {}, 0};
}

report::ThreadReport thread(uint32_t tid, const std::string& name, double held_s) {
  report::ThreadReport t;
  t.tid = tid;
  t.name = name;
  t.held_ns = held_s * 1e9;
  return t;
}

stacks::Sample profile_sample(uint32_t tid, uint32_t stack) {
  stacks::Sample s;
  s.tid = tid;
  s.stack = stack;
  s.reason = stacks::SampleReason::Profile;
  return s;
}

struct Fixture {
  stacks::StackTable table;
  report::Report r;
  report::ProfileCounter counter;
  uint32_t loop = 0, leaf = 0, main_only = 0;

  Fixture() {
    const uint32_t run = *table.frame_id(py("run", "/srv/app.py", 10));
    const uint32_t spin = *table.frame_id(py("spin", "/srv/app.py", 20));
    const uint32_t hash = *table.frame_id(py("hash_it", "/srv/util.py", 5));
    const uint32_t native = *table.frame_id(Frame{FrameKind::Native, "", "", 0, "_x.so", 0x1a2b});
    loop = *table.stack_id({spin, run});               // innermost first
    leaf = *table.stack_id({native, hash, spin, run});  // a native frame is skipped for "self"
    main_only = *table.stack_id({run});
    r.threads = {thread(11, "worker-1", 1.0), thread(12, "worker-2", 0.5),
                 thread(13, "MainThread", 0.1), thread(14, "gilstat", 0.2)};
    r.threads[3].own = true;
    // worker-1: 3 samples in spin, 1 in hash_it; worker-2: 1 in run; MainThread: none.
    for (int i = 0; i < 3; ++i) counter.add(profile_sample(11, loop));
    counter.add(profile_sample(11, leaf));
    counter.add(profile_sample(12, main_only));
    stacks::Sample hog = profile_sample(12, leaf);
    hog.reason = stacks::SampleReason::LongHold;  // not a profile sample: ignored here
    counter.add(hog);
  }
};

const report::ProfileEntry* entry(const report::GilProfile& p, const std::string& fn) {
  for (const auto& e : p.functions)
    if (e.function == fn) return &e;
  return nullptr;
}

TEST(GilProfile, SamplesShareTheirThreadsExactHeldTime) {
  Fixture f;
  const report::GilProfile p = f.counter.finish(f.r, f.table);
  EXPECT_EQ(p.samples, 5u);
  EXPECT_DOUBLE_EQ(p.sampled_held_ns, 1.5e9);
  EXPECT_DOUBLE_EQ(p.unsampled_held_ns, 0.1e9);  // MainThread; gilstat's own never counts
  ASSERT_NE(entry(p, "spin"), nullptr);
  EXPECT_DOUBLE_EQ(entry(p, "spin")->self_ns, 0.75e9);   // 3 of worker-1's 4 samples
  EXPECT_DOUBLE_EQ(entry(p, "spin")->total_ns, 1.0e9);   // on all 4
  EXPECT_DOUBLE_EQ(entry(p, "hash_it")->self_ns, 0.25e9);
  EXPECT_DOUBLE_EQ(entry(p, "run")->self_ns, 0.5e9);     // worker-2's only sample
  EXPECT_DOUBLE_EQ(entry(p, "run")->total_ns, 1.5e9);
  EXPECT_EQ(entry(p, "spin")->line, 20u);
  EXPECT_EQ(p.functions.front().function, "spin");  // by self time
  ASSERT_EQ(p.groups.size(), 1u);  // worker-1 and worker-2 are one group
  EXPECT_EQ(p.groups[0].group, "worker-N");
  EXPECT_DOUBLE_EQ(p.groups[0].held_ns, 1.5e9);

  double folded = 0;
  for (const auto& s : p.folded) folded += s.held_ns;
  EXPECT_DOUBLE_EQ(folded, 1.6e9);  // every program thread's held time
  bool not_sampled = false, with_native = false;
  for (const auto& s : p.folded) {
    not_sampled |= s.stack == "MainThread;(not sampled)";
    with_native |= s.stack ==
                   "worker-N;run (/srv/app.py:10);spin (/srv/app.py:20);hash_it (/srv/util.py:5);"
                   "_x.so+0x1a2b";
  }
  EXPECT_TRUE(not_sampled);
  EXPECT_TRUE(with_native);
}

TEST(GilProfile, RenderedAsTextJsonAndFoldedStacks) {
  Fixture f;
  f.r.gil_profile = f.counter.finish(f.r, f.table);
  const auto text = report::profile_section(f.r, 10);
  ASSERT_GE(text.size(), 4u);
  EXPECT_NE(text[1].find("5 samples"), std::string::npos);
  EXPECT_NE(text[3].find("spin  app.py:20"), std::string::npos);
  EXPECT_NE(text.back().find("not sampled: 0.100 s"), std::string::npos);

  const std::string json = report::profile_json(f.r);
  EXPECT_NE(json.find(R"("samples": 5, "sampled_held_s": 1.5, "unsampled_held_s": 0.1)"),
            std::string::npos)
      << json;
  EXPECT_NE(json.find(R"({"function": "spin", "file": "/srv/app.py", "line": 20, "held_s": 0.75)"),
            std::string::npos)
      << json;

  std::ostringstream folded;
  report::render_collapsed(f.r, folded);
  EXPECT_NE(folded.str().find("worker-N;run (/srv/app.py:10);spin (/srv/app.py:20) 750000000\n"),
            std::string::npos)
      << folded.str();
  EXPECT_NE(folded.str().find("MainThread;(not sampled) 100000000\n"), std::string::npos);

  report::Report empty;
  EXPECT_TRUE(report::profile_section(empty, 10).empty());
}

TEST(GilProfile, FoldedNamesCannotBreakTheFormat) {
  stacks::StackTable table;
  const uint32_t odd = *table.frame_id(py("a;b\nc", "f;g.py", 1));
  const uint32_t s = *table.stack_id({odd});
  report::Report r;
  r.threads = {thread(1, "x;y", 1.0)};
  report::ProfileCounter c;
  c.add(profile_sample(1, s));
  r.gil_profile = c.finish(r, table);
  std::ostringstream out;
  report::render_collapsed(r, out);
  EXPECT_EQ(out.str(), "x:y;a:b c (f:g.py:1) 1000000000\n");
}

TEST(StackTable, DefinitionsMustComeInOrderAndPointBackwards) {
  stacks::StackTable t;
  EXPECT_FALSE(t.define_frame(1, py("f", "a.py", 1)));  // id 0 first
  EXPECT_TRUE(t.define_frame(0, py("f", "a.py", 1)));
  EXPECT_FALSE(t.define_stack(0, {0, 1}));  // frame 1 not defined
  EXPECT_TRUE(t.define_stack(0, {0, 0}));
  EXPECT_FALSE(t.define_stack(0, {0}));  // id 0 again
  EXPECT_EQ(t.frame_id(py("f", "a.py", 1)), 0u);
  EXPECT_EQ(t.stack_id({0, 0}), 0u);
  EXPECT_FALSE(t.stack_id({7}));  // unknown frame
}

struct Collected : proto::RecordingVisitor {
  stacks::StackTable table;
  std::vector<stacks::Sample> samples;
  bool bad = false;
  void on_frame(uint32_t id, const Frame& f) override { bad |= !table.define_frame(id, f); }
  void on_stack(uint32_t id, std::span<const uint32_t> ids) override {
    bad |= !table.define_stack(id, {ids.begin(), ids.end()});
  }
  void on_sample(const stacks::Sample& s) override { samples.push_back(s); }
};

TEST(GilProfile, FramesStacksAndSamplesRoundTripThroughARecording) {
  Fixture f;
  const std::string path =
      (std::filesystem::temp_directory_path() / ("gilstat-stacks-" + std::to_string(getpid())))
          .string();
  stacks::Sample hog = profile_sample(12, f.leaf);
  hog.reason = stacks::SampleReason::LongHold;
  hog.ts = 123456;
  hog.hold_start = 100000;
  hog.gil = 1;
  {
    proto::RecordingWriter w(path, {});
    for (uint32_t id = 0; id < f.table.frame_count(); ++id) w.frame(id, *f.table.frame(id));
    for (uint32_t id = 0; id < f.table.stack_count(); ++id) w.stack(id, *f.table.stack(id));
    w.sample(profile_sample(11, f.loop));
    w.sample(hog);
    w.end({200000, 1.0, 0});
    w.close();
  }
  Collected c;
  const proto::ReadResult read = proto::read_recording(path, c);
  std::filesystem::remove(path);
  EXPECT_TRUE(read.complete);
  EXPECT_FALSE(c.bad);
  ASSERT_EQ(c.table.frame_count(), f.table.frame_count());
  for (uint32_t id = 0; id < f.table.frame_count(); ++id)
    EXPECT_EQ(*c.table.frame(id), *f.table.frame(id));
  ASSERT_EQ(c.table.stack_count(), f.table.stack_count());
  EXPECT_EQ(*c.table.stack(f.leaf), *f.table.stack(f.leaf));
  ASSERT_EQ(c.samples.size(), 2u);
  EXPECT_EQ(c.samples[1].reason, stacks::SampleReason::LongHold);
  EXPECT_EQ(c.samples[1].ts, 123456u);
  EXPECT_EQ(c.samples[1].hold_start, 100000u);
  EXPECT_EQ(c.samples[1].gil, 1u);
  EXPECT_EQ(c.samples[1].stack, f.leaf);
}

}  // namespace
}  // namespace gilstat

// The probe's exact totals (protocol.hpp ThreadTotals, GilSlot counters)
// and their reconciliation with the events that reached the CLI: the
// probe's rules (ring.hpp totals_add) must give what the event timelines
// give, a report built from totals must not change when events are lost,
// and the region reader must bound what a target writes into them.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <set>

#include "event_sim.hpp"
#include "gilstat/ring.hpp"
#include "proto/capture.hpp"
#include "proto/recording.hpp"
#include "proto/shm_region.hpp"
#include "report/aggregator.hpp"
#include "report/groups.hpp"

using namespace gilstat;

namespace {

using gilstat::testing::EventScript;
using gilstat::testing::SimTruth;

constexpr proto::Layout kLayout = proto::make_layout(8, 16, 8);

// A region image in ordinary memory whose rings belong to a script's
// threads: every event goes through the probe's totals_add, and only the
// events `keep` accepts are pushed (a full ring loses the others).
class Image {
 public:
  Image() : mem_(std::aligned_alloc(4096, kLayout.total_size)) {
    std::memset(mem_, 0, kLayout.total_size);
    header_ = proto::init_header(mem_, kLayout, proto::ClockKind::Monotonic);
    header_->rings_claimed.store(kLayout.ring_count);
  }
  ~Image() { std::free(mem_); }
  Image(const Image&) = delete;
  Image& operator=(const Image&) = delete;
  proto::Header* header() { return header_; }
  proto::RingControl* ring(uint32_t i) {
    return reinterpret_cast<proto::RingControl*>(static_cast<char*>(mem_) + kLayout.rings_offset +
                                                 proto::ring_stride(kLayout.ring_capacity) * i);
  }
  proto::ShmRegion open() { return proto::ShmRegion::over_memory(mem_, kLayout.total_size); }

  // Ring i owned by tid, its totals filled from `events`.
  void own(uint32_t i, uint32_t tid, const std::vector<proto::Event>& events) {
    proto::RingControl* r = ring(i);
    r->tid = tid;
    r->state.store(static_cast<uint32_t>(proto::RingState::Active));
    for (const proto::Event& ev : events)
      proto::totals_add(r->totals[ev.gil], static_cast<proto::EventKind>(ev.kind), ev.ts);
  }

 private:
  void* mem_;
  proto::Header* header_;
};

report::RecordingInfo info_for(uint64_t end, bool exact) {
  report::RecordingInfo info;
  info.window_start = 0;
  info.window_end = end;
  info.totals_exact = exact;
  return info;
}

// The closed totals of every live ring of `image`, as Capture takes them.
std::vector<report::ExactTotals> live_totals(Image& image, uint64_t end, bool* complete) {
  proto::ShmRegion region = image.open();
  std::vector<report::ExactTotals> out;
  *complete = region.live_totals(
      [&](const proto::TotalsSnapshot& s) { out.push_back(proto::close_totals(s, end)); });
  return out;
}

const report::ThreadReport* row(const report::Report& r, uint32_t tid) {
  for (const auto& t : r.threads)
    if (t.tid == tid) return &t;
  return nullptr;
}

// A random GIL history of four threads through the probe's totals; the
// events, all of them or a lossy part, through the aggregator.
struct History {
  EventScript script;
  SimTruth truth;
  Image image;
  report::GilInfo gil;

  explicit History(uint64_t seed) {
    truth = gilstat::testing::simulate_gil(script, seed, 4, 3000);
    uint32_t i = 0;
    for (const auto& [tid, events] : script.rings()) image.own(i++, tid, events);
    gil = report::GilInfo{0, 0x1000, 0, truth.switch_number_delta, truth.initial_holder, {0}};
    gil.counters = true;
    gil.acquisitions = truth.acquisitions;
    gil.switches = truth.switch_number_delta;  // what the probe counts at each Acquire
    gil.drop_requests = truth.drop_requests;
  }

  // The events every `keep_one_in`-th (1: all), a report with or without the totals.
  report::Report report(int keep_one_in, bool with_totals) {
    report::Aggregator agg;
    for (const auto& [tid, events] : script.rings())
      for (size_t k = 0; k < events.size(); ++k)
        if (k % static_cast<size_t>(keep_one_in) == 0) agg.add_event(tid, 0, events[k]);
    bool complete = false;
    const auto live = live_totals(image, truth.window_end, &complete);
    EXPECT_TRUE(complete);
    return agg.finish(info_for(truth.window_end, with_totals), {gil}, live);
  }
};

TEST(Totals, TheProbesRulesGiveWhatTheEventsGive) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    History run(seed);
    const report::Report events = run.report(1, false);
    const report::Report totals = run.report(1, true);
    EXPECT_FALSE(events.totals_exact);
    EXPECT_TRUE(totals.totals_exact);
    ASSERT_EQ(events.threads.size(), totals.threads.size());
    for (const auto& e : events.threads) {
      const report::ThreadReport* t = row(totals, e.tid);
      ASSERT_NE(t, nullptr);
      EXPECT_EQ(t->held_ns, e.held_ns) << "seed " << seed << " tid " << e.tid;
      EXPECT_EQ(t->wait_total_ns, e.wait_total_ns) << seed;
      EXPECT_EQ(t->released_ns, e.released_ns) << seed;
      EXPECT_EQ(t->lifetime_ns, e.lifetime_ns) << seed;
      EXPECT_EQ(t->acquisitions, e.acquisitions) << seed;
      EXPECT_EQ(t->forced_handoffs, e.forced_handoffs) << seed;
      EXPECT_EQ(t->held_ns, static_cast<double>(run.truth.held[e.tid])) << seed;
      EXPECT_EQ(t->wait_total_ns, static_cast<double>(run.truth.wait[e.tid])) << seed;
    }
    ASSERT_EQ(totals.gils.size(), 1u);
    EXPECT_EQ(totals.gils[0].switches, events.gils[0].switches) << seed;
    EXPECT_EQ(totals.gils[0].acquisitions, events.gils[0].acquisitions) << seed;
    EXPECT_EQ(totals.gils[0].forced_switch_requests, events.gils[0].forced_switch_requests);
    EXPECT_EQ(totals.gils[0].forced_handoffs, events.gils[0].forced_handoffs) << seed;
    EXPECT_DOUBLE_EQ(totals.gils[0].utilization, events.gils[0].utilization) << seed;
  }
}

TEST(Totals, LostEventsChangeNoTotal) {
  for (uint64_t seed = 21; seed <= 30; ++seed) {
    History run(seed);
    const report::Report all = run.report(1, true);
    const report::Report lossy = run.report(3, true);   // two events in three lost
    const report::Report naive = run.report(3, false);  // the same, from events only
    for (const auto& a : all.threads) {
      const report::ThreadReport* l = row(lossy, a.tid);
      ASSERT_NE(l, nullptr);
      EXPECT_EQ(l->held_ns, a.held_ns) << seed;
      EXPECT_EQ(l->wait_total_ns, a.wait_total_ns) << seed;
      EXPECT_EQ(l->released_ns, a.released_ns) << seed;
      EXPECT_EQ(l->lifetime_ns, a.lifetime_ns) << seed;
      EXPECT_EQ(l->held_ns + l->wait_total_ns + l->released_ns, l->lifetime_ns) << seed;
      EXPECT_EQ(l->acquisitions, a.acquisitions) << seed;
    }
    EXPECT_EQ(lossy.gils[0].switches, run.truth.switch_number_delta) << seed;
    EXPECT_EQ(lossy.gils[0].acquisitions, run.truth.acquisitions) << seed;
    EXPECT_DOUBLE_EQ(lossy.gils[0].utilization, all.gils[0].utilization) << seed;
    // Without the totals the same events undercount: the test can fail.
    EXPECT_NE(naive.gils[0].acquisitions, run.truth.acquisitions) << seed;
  }
}

TEST(Totals, ARowWhoseEventsWereAllLostStillShows) {
  History run(31);
  report::Aggregator agg;  // no events at all
  bool complete = false;
  const auto live = live_totals(run.image, run.truth.window_end, &complete);
  const report::Report r = agg.finish(info_for(run.truth.window_end, true), {run.gil}, live);
  EXPECT_EQ(r.threads.size(), run.script.rings().size());
  for (const auto& [tid, held] : run.truth.held)
    EXPECT_EQ(row(r, tid)->held_ns, static_cast<double>(held));
}

TEST(Totals, EndedThreadsAddUpWithLiveOnes) {
  // One tid whose first ring ended (final totals) and a second ring of the
  // same tid still running: the row is their sum.
  Image image;
  EventScript s;
  s.wait_begin(5, 10);
  s.acquire(5, 12, 0xA);
  s.release(5, 20, 0xA);
  image.own(0, 5, s.rings().at(5));
  proto::ShmRegion region = image.open();
  std::vector<report::ExactTotals> live;
  ASSERT_TRUE(region.live_totals(
      [&](const proto::TotalsSnapshot& t) { live.push_back(proto::close_totals(t, 100)); }));
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].held, 8u);
  EXPECT_EQ(live[0].wait, 2u);
  EXPECT_EQ(live[0].lifetime, 10u);  // released: ends at its last change
  report::Aggregator agg;
  agg.add_thread_totals(live[0]);
  const report::Report r = agg.finish(info_for(100, true), {}, live);
  ASSERT_EQ(r.threads.size(), 1u);
  EXPECT_EQ(r.threads[0].held_ns, 16.0);
  EXPECT_EQ(r.threads[0].acquisitions, 2u);
}

TEST(Totals, AnOpenHoldIsClosedAtTheWindowsEnd) {
  Image image;
  EventScript s;
  s.wait_begin(5, 10);
  s.acquire(5, 15, 0xA);
  image.own(0, 5, s.rings().at(5));
  bool complete = false;
  const auto live = live_totals(image, 40, &complete);
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].wait, 5u);
  EXPECT_EQ(live[0].held, 25u);
  EXPECT_EQ(live[0].lifetime, 30u);
}

TEST(Totals, TheReaderBoundsWhatTheTargetWrites) {
  {
    Image image;  // a state no probe writes
    image.own(0, 5, {});
    image.ring(0)->totals[3].state.store(9);
    proto::ShmRegion region = image.open();
    EXPECT_THROW(region.live_totals([](const proto::TotalsSnapshot&) {}), proto::RegionCorrupt);
    EXPECT_TRUE(region.corrupt());
  }
  {
    Image image;  // a writer that never finishes: incomplete, not a hang
    EventScript s;
    s.wait_begin(5, 10);
    image.own(0, 5, s.rings().at(5));
    image.ring(0)->totals[0].seq.store(7);
    bool complete = true;
    const auto live = live_totals(image, 40, &complete);
    EXPECT_FALSE(complete);
    EXPECT_TRUE(live.empty());
  }
  {
    Image image;  // totals of an earlier consumer session are not this one's
    EventScript s;
    s.wait_begin(5, 10);
    image.own(0, 5, s.rings().at(5));
    image.ring(0)->totals_session.store(3);
    bool complete = false;
    EXPECT_TRUE(live_totals(image, 40, &complete).empty());
    EXPECT_TRUE(complete);
  }
  {
    Image image;  // values that cannot be right are values: saturated, never UB
    image.own(0, 5, {});
    proto::ThreadTotals& t = image.ring(0)->totals[0];
    t.state.store(static_cast<uint32_t>(proto::TotalsState::Holding));
    t.first_ts.store(UINT64_MAX);
    t.since.store(5);
    t.held.store(UINT64_MAX);
    bool complete = false;
    const auto live = live_totals(image, 40, &complete);
    ASSERT_EQ(live.size(), 1u);
    EXPECT_EQ(live[0].held, UINT64_MAX);
    EXPECT_EQ(live[0].lifetime, 0u);
  }
}

TEST(Totals, ACapturedRecordingKeepsThemExact) {
  // Capture over a region whose ring lost most events: the live report and
  // the report of its recording agree, and both use the totals.
  namespace fs = std::filesystem;
  History run(41);
  run.image.header()->gil_count.store(1);
  proto::GilSlot& slot = run.image.header()->gils[0];
  slot.address = 0x1000;
  slot.initial_holder = run.truth.initial_holder;
  slot.last_switch_number.store(run.truth.switch_number_delta);
  slot.acquisitions.store(run.truth.acquisitions);
  slot.switches.store(run.truth.switch_number_delta);
  slot.drop_requests.store(run.truth.drop_requests);
  for (auto& id : slot.interp_ids) id = -1;
  slot.valid.store(1);
  const std::string path =
      (fs::temp_directory_path() / ("gilstat-totals-" + std::to_string(getpid()) + ".gst"))
          .string();
  report::Report live;
  {
    proto::ShmRegion region = run.image.open();
    proto::RecordingWriter writer(path);
    proto::Capture capture(region, &writer);
    live = capture.finish(run.truth.window_end, 1.0, "test");
    writer.close();
  }
  EXPECT_TRUE(live.totals_exact);
  EXPECT_EQ(live.gils[0].switches, run.truth.switch_number_delta);
  EXPECT_EQ(live.gils[0].acquisitions, run.truth.acquisitions);
  for (const auto& [tid, held] : run.truth.held)
    EXPECT_EQ(row(live, tid)->held_ns, static_cast<double>(held));

  struct Feed : proto::RecordingVisitor {
    std::vector<proto::RecTotals> totals;
    std::vector<proto::RecGil> gils;
    std::vector<proto::RecEnd> ends;
    void on_totals(const proto::RecTotals& t) override { totals.push_back(t); }
    void on_gil(const proto::RecGil& g) override { gils.push_back(g); }
    void on_end(const proto::RecEnd& e) override { ends.push_back(e); }
  } feed;
  proto::read_recording(path, feed);
  fs::remove(path);
  EXPECT_EQ(feed.totals.size(), run.script.rings().size());
  ASSERT_FALSE(feed.gils.empty());
  EXPECT_TRUE(feed.gils.back().counters);
  EXPECT_EQ(feed.gils.back().switches, run.truth.switch_number_delta);
  ASSERT_EQ(feed.ends.size(), 1u);
  EXPECT_TRUE(feed.ends[0].totals_exact);
}

// Live views fold the rows of exited threads into one row per group
// (Aggregator::fold_exited): every sum must stay what it was.  The threads
// whose last event is a Release have ended (the probe's final totals);
// folding them changes no group's, no GIL's figure, with every event, with
// most events lost, and from the events alone.
std::map<std::pair<std::string, uint32_t>, report::GroupReport> groups_by_key(
    const report::Report& r) {
  std::map<std::pair<std::string, uint32_t>, report::GroupReport> out;
  for (const auto& g : r.groups) out[{g.key, g.gil}] = g;
  return out;
}

TEST(Totals, FoldingExitedThreadsKeepsEverySumExact) {
  size_t folded_total = 0;
  for (uint64_t seed = 51; seed <= 62; ++seed) {
    for (const int keep_one_in : {1, 3}) {
      for (const bool exact : {true, false}) {
        if (!exact && keep_one_in != 1) continue;  // events alone undercount anyway
        EventScript script;
        const SimTruth truth = gilstat::testing::simulate_gil(script, seed, 6, 2000);
        Image image;
        uint32_t i = 0;
        for (const auto& [tid, events] : script.rings()) image.own(i++, tid, events);
        report::GilInfo gil{0, 0x1000, 0, truth.switch_number_delta, truth.initial_holder, {0}};
        gil.counters = true;
        gil.acquisitions = truth.acquisitions;
        gil.switches = truth.switch_number_delta;
        gil.drop_requests = truth.drop_requests;
        bool complete = false;
        const auto totals = live_totals(image, truth.window_end, &complete);
        ASSERT_TRUE(complete);
        std::set<uint32_t> ended;
        for (const auto& [tid, events] : script.rings())
          if (events.back().kind == static_cast<uint8_t>(proto::EventKind::Release))
            ended.insert(tid);
        report::Aggregator whole, folded;
        for (report::Aggregator* agg : {&whole, &folded}) {
          for (const auto& [tid, events] : script.rings()) {
            // Two groups of named threads and unnamed ones (native-N).
            if (tid % 3 != 2)
              agg->set_thread_name(tid, fmt::format("{}-{}", tid % 3 ? "pool" : "worker", tid));
            for (size_t k = 0; k < events.size(); ++k)
              if (k % static_cast<size_t>(keep_one_in) == 0) agg->add_event(tid, 0, events[k]);
          }
        }
        std::vector<report::ExactTotals> live;
        for (const auto& t : totals) {
          if (!ended.count(t.tid)) {
            live.push_back(t);
            continue;
          }
          whole.add_thread_totals(t);
          folded.add_thread_totals(t);
        }
        const size_t rows_before = folded.thread_rows();
        const uint64_t arm_ts[1] = {0};
        for (const uint32_t tid : ended) folded.fold_exited(tid, arm_ts, truth.window_end);
        folded_total += ended.size();
        EXPECT_EQ(folded.thread_rows(), rows_before - ended.size());
        const auto info = info_for(truth.window_end, exact);
        const report::Report a = whole.finish(info, {gil}, live);
        const report::Report b = folded.finish(info, {gil}, live);
        const auto ga = groups_by_key(a), gb = groups_by_key(b);
        ASSERT_EQ(ga.size(), gb.size()) << seed;
        for (const auto& [key, x] : ga) {
          const report::GroupReport& y = gb.at(key);
          const std::string what = fmt::format("seed {} keep 1/{} {} group {}", seed, keep_one_in,
                                               exact ? "exact" : "events", key.first);
          EXPECT_EQ(y.held_ns, x.held_ns) << what;
          EXPECT_EQ(y.wait_total_ns, x.wait_total_ns) << what;
          EXPECT_EQ(y.released_ns, x.released_ns) << what;
          EXPECT_EQ(y.lifetime_ns, x.lifetime_ns) << what;
          EXPECT_EQ(y.acquisitions, x.acquisitions) << what;
          EXPECT_EQ(y.forced_handoffs, x.forced_handoffs) << what;
          EXPECT_EQ(y.hold_ns.count, x.hold_ns.count) << what;
          EXPECT_EQ(y.hold_ns.total, x.hold_ns.total) << what;
          EXPECT_EQ(y.hold_ns.max, x.hold_ns.max) << what;
          EXPECT_EQ(y.wait_ns.count, x.wait_ns.count) << what;
          EXPECT_EQ(y.wait_ns.total, x.wait_ns.total) << what;
          EXPECT_EQ(y.drop_latency_count, x.drop_latency_count) << what;
          EXPECT_EQ(y.tids.size() + y.exited_threads, x.tids.size()) << what;
        }
        ASSERT_EQ(a.gils.size(), 1u);
        ASSERT_EQ(b.gils.size(), 1u);
        EXPECT_EQ(b.gils[0].acquisitions, a.gils[0].acquisitions);
        EXPECT_EQ(b.gils[0].switches, a.gils[0].switches);
        EXPECT_EQ(b.gils[0].forced_handoffs, a.gils[0].forced_handoffs);
        EXPECT_DOUBLE_EQ(b.gils[0].utilization, a.gils[0].utilization);
        EXPECT_DOUBLE_EQ(b.gils[0].mean_waiting_threads, a.gils[0].mean_waiting_threads);
        EXPECT_EQ(b.gils[0].wait_ns.total, a.gils[0].wait_ns.total);
        EXPECT_EQ(b.drops, a.drops);
        // The exited threads' own rows are gone: one row per group instead.
        for (const auto& t : b.threads) EXPECT_TRUE(t.exited_threads || !ended.count(t.tid));
        if (exact && keep_one_in == 1) {
          uint64_t acq = 0;
          for (const auto& t : b.threads) acq += t.acquisitions;
          EXPECT_EQ(acq, truth.acquisitions) << seed;
        }
      }
    }
  }
  EXPECT_GE(folded_total, 12u);  // the histories do end threads: the test can fail
}

}  // namespace

// The SPSC ring the probe writes and the CLI drains (include/gilstat/ring.hpp),
// exercised as the real code: one RingControl followed by its events in one
// 64-byte aligned block, like a ring inside the shared region.
#include "gilstat/ring.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <new>
#include <thread>
#include <vector>

namespace gilstat::proto {
namespace {

#ifndef GILSTAT_RING_STRESS_EVENTS
#define GILSTAT_RING_STRESS_EVENTS 5'000'000
#endif

class Ring {
 public:
  explicit Ring(uint32_t capacity) : capacity_(capacity) {
    const size_t bytes = align_up(ring_stride(capacity), alignof(RingControl));
    mem_ = std::aligned_alloc(alignof(RingControl), bytes);
    if (!mem_) throw std::bad_alloc();
    ctl_ = new (mem_) RingControl{};
  }
  ~Ring() {
    ctl_->~RingControl();
    std::free(mem_);
  }
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  bool push(const Event& ev) { return ring_push(ctl_, capacity_, ev); }
  std::vector<Event> drain() {
    std::vector<Event> out;
    ring_drain(ctl_, capacity_, tail_, [&](const Event& ev) { out.push_back(ev); });
    return out;
  }
  uint64_t& tail() { return tail_; }
  RingControl* ctl() { return ctl_; }

 private:
  uint32_t capacity_;
  void* mem_;
  RingControl* ctl_;
  uint64_t tail_ = 0;  // the consumer's own read position
};

// Every field is derived from i, so a torn or stale slot shows up as a
// mismatch, not just as a wrong counter.
Event make_event(uint64_t i) {
  return Event{i,
               ~i,
               static_cast<uint32_t>(i * 7),
               static_cast<uint8_t>(i % 6 + 1),
               static_cast<uint8_t>(i % 3),
               0};
}

void expect_event(const Event& ev, uint64_t i) {
  const Event want = make_event(i);
  EXPECT_EQ(ev.ts, want.ts);
  EXPECT_EQ(ev.value, want.value);
  EXPECT_EQ(ev.seq, want.seq);
  EXPECT_EQ(ev.kind, want.kind);
  EXPECT_EQ(ev.gil, want.gil);
}

TEST(Ring, EventsFollowTheControlBlock) {
  Ring ring(8);
  EXPECT_EQ(reinterpret_cast<char*>(ring_events(ring.ctl())),
            reinterpret_cast<char*>(ring.ctl()) + sizeof(RingControl));
  EXPECT_EQ(sizeof(RingControl) % alignof(Event), 0u);
}

TEST(Ring, PushFieldsWritesWhatPushWrites) {
  // The hook path's in-place push must lay out a slot exactly as an Event,
  // reserved bytes zero, and count a drop the same way when full.
  Ring ring(4);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(ring.push(Event{~0ull, ~0ull, ~0u, 0xff, 0xff, 0xffff}));
  ASSERT_EQ(ring.drain().size(), 4u);  // every slot now holds set bits
  for (uint64_t i = 1; i <= 4; ++i) {
    const Event ev = make_event(i * 0x0101'0101'0101ull);
    ASSERT_TRUE(ring_push_fields(ring.ctl(), 4, ev.ts, ev.value, ev.seq, ev.kind, ev.gil));
  }
  EXPECT_FALSE(ring_push_fields(ring.ctl(), 4, 1, 2, 3, 4, 5));
  EXPECT_EQ(ring.ctl()->dropped.load(), 1u);
  const std::vector<Event> got = ring.drain();
  ASSERT_EQ(got.size(), 4u);
  for (uint64_t i = 1; i <= 4; ++i) {
    expect_event(got[i - 1], i * 0x0101'0101'0101ull);
    EXPECT_EQ(got[i - 1].reserved, 0);
  }
}

TEST(Ring, PushThenDrainKeepsOrder) {
  Ring ring(8);
  for (uint64_t i = 0; i < 5; ++i) ASSERT_TRUE(ring.push(make_event(i)));
  const auto got = ring.drain();
  ASSERT_EQ(got.size(), 5u);
  for (uint64_t i = 0; i < 5; ++i) expect_event(got[i], i);
  EXPECT_TRUE(ring.drain().empty());
}

TEST(Ring, WrapsAroundManyTimes) {
  Ring ring(8);
  uint64_t next_push = 0, next_read = 0;
  for (int round = 0; round < 50; ++round) {
    const int n = 1 + round % 8;  // uneven batches move the slot index around
    for (int k = 0; k < n; ++k) ASSERT_TRUE(ring.push(make_event(next_push++)));
    for (const Event& ev : ring.drain()) expect_event(ev, next_read++);
    ASSERT_EQ(next_read, next_push);
  }
  EXPECT_GT(ring.ctl()->head.load(), 8u * 20);
  EXPECT_EQ(ring.ctl()->dropped.load(), 0u);
}

TEST(Ring, FullRingCountsDropsAndKeepsTheOldest) {
  Ring ring(8);
  for (uint64_t i = 0; i < 8; ++i) ASSERT_TRUE(ring.push(make_event(i)));
  for (uint64_t i = 8; i < 13; ++i) EXPECT_FALSE(ring.push(make_event(i)));
  EXPECT_EQ(ring.ctl()->dropped.load(), 5u);
  const auto got = ring.drain();
  ASSERT_EQ(got.size(), 8u);
  for (uint64_t i = 0; i < 8; ++i) expect_event(got[i], i);
  // Space again after the drain.
  EXPECT_TRUE(ring.push(make_event(100)));
  expect_event(ring.drain().at(0), 100);
  EXPECT_EQ(ring.ctl()->dropped.load(), 5u);
}

TEST(Ring, DrainRefusesACorruptHead) {
  Ring ring(8);
  ring.ctl()->head.store(1'000'000);  // a hostile or corrupt producer
  int seen = 0;
  EXPECT_EQ(ring_drain(ring.ctl(), 8, ring.tail(), [&](const Event&) { ++seen; }), kRingCorrupt);
  EXPECT_EQ(seen, 0);  // nothing read, never out of bounds
  EXPECT_EQ(ring.tail(), 0u);
  ring.ctl()->head.store(UINT64_MAX);  // "behind" the tail: the same distance check
  EXPECT_EQ(ring_drain(ring.ctl(), 8, ring.tail(), [&](const Event&) { ++seen; }), kRingCorrupt);
}

TEST(Ring, DrainIgnoresATailMovedByTheProducer) {
  Ring ring(8);
  for (uint64_t i = 0; i < 3; ++i) ring.push(make_event(i));
  ring.ctl()->tail.store(2);           // the shared copy scribbled over
  EXPECT_EQ(ring.drain().size(), 3u);  // read from the consumer's own position
  EXPECT_EQ(ring.ctl()->tail.load(), 3u);
}

// One producer floods a small ring while the consumer drains concurrently,
// like a busy GIL thread and the CLI's poller.  Nothing may be lost without
// being counted, duplicated, reordered or torn.
TEST(Ring, ConcurrentProducerConsumerLosesNothingUncounted) {
  constexpr uint64_t kPushed = GILSTAT_RING_STRESS_EVENTS;
  Ring ring(64);
  std::atomic<bool> done{false};
  uint64_t accepted = 0;
  std::thread producer([&] {
    for (uint64_t i = 0; i < kPushed; ++i) {
      // On a full ring, give the consumer a chance (on a loaded machine it
      // may not even be running), so that most events really cross the
      // ring concurrently instead of nearly all being dropped.
      if (ring.push(make_event(i))) {
        ++accepted;
      } else {
        std::this_thread::yield();
      }
    }
    done.store(true, std::memory_order_release);
  });

  uint64_t received = 0, bad = 0;
  int64_t last = -1;
  const auto consume = [&](const Event& ev) {
    const Event want = make_event(ev.ts);
    // In order, no duplicates, and the whole record belongs to one push.
    if (static_cast<int64_t>(ev.ts) <= last || ev.value != want.value || ev.seq != want.seq ||
        ev.kind != want.kind || ev.gil != want.gil)
      ++bad;
    last = static_cast<int64_t>(ev.ts);
    ++received;
  };
  while (!done.load(std::memory_order_acquire)) {
    if (ring_drain(ring.ctl(), 64, ring.tail(), consume) == 0) std::this_thread::yield();
  }
  ring_drain(ring.ctl(), 64, ring.tail(), consume);  // what was pushed after the last poll
  producer.join();

  const uint64_t dropped = ring.ctl()->dropped.load();
  EXPECT_EQ(bad, 0u);
  EXPECT_EQ(received, accepted);
  EXPECT_EQ(received + dropped, kPushed);
  // The point is concurrent traffic: the ring must have wrapped many times.
  EXPECT_GT(received, 1000u * 64) << "dropped " << dropped;
  RecordProperty("received", static_cast<int>(received));
  RecordProperty("dropped", static_cast<int>(dropped));
}

}  // namespace
}  // namespace gilstat::proto

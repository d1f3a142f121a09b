// The CLI's region reader on regions a hostile target could leave behind
// (docs/region.md): refused layouts, a header changed after open, rings and
// the name log lying, and fds that are not a sealed memfd.
#include "proto/shm_region.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gilstat/ring.hpp"
#include "proto/ring_taker.hpp"

using namespace gilstat;
using namespace gilstat::proto;

namespace {

constexpr Layout kLayout = make_layout(4, 8, 8);

// A region image in ordinary memory, as the probe initialises it.
class Image {
 public:
  Image() : mem_(std::aligned_alloc(4096, kLayout.total_size)) {
    std::memset(mem_, 0, kLayout.total_size);
    init_header(mem_, kLayout, ClockKind::Monotonic)->rings_claimed.store(kLayout.ring_count);
  }
  ~Image() { std::free(mem_); }
  Header* header() { return static_cast<Header*>(mem_); }
  RingControl* ring(uint32_t i) {
    return reinterpret_cast<RingControl*>(static_cast<char*>(mem_) + kLayout.rings_offset +
                                          ring_stride(kLayout.ring_capacity) * i);
  }
  ShmRegion open() { return ShmRegion::over_memory(mem_, kLayout.total_size); }
  // Ring i, claimed by thread tid.
  RingControl* active_ring(uint32_t i, uint32_t tid) {
    RingControl* r = ring(i);
    r->tid = tid;
    r->state.store(static_cast<uint32_t>(RingState::Active));
    return r;
  }

 private:
  void* mem_;
};

std::string corruption_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const RegionCorrupt& e) {
    return e.what();
  }
  return "(no RegionCorrupt)";
}

uint64_t drain_all(ShmRegion& r) {
  return r.drain([](uint32_t, uint32_t, const Event&) {}, [](uint32_t, uint64_t) {});
}

}  // namespace

TEST(ShmRegion, RefusesLayoutsThatDoNotFit) {
  auto refused = [](auto&& change) {
    Image img;
    change(*img.header());
    return corruption_of([&] { img.open(); });
  };
  EXPECT_NE(refused([](Header& h) { h.magic = 0; }).find("magic"), std::string::npos);
  EXPECT_NE(refused([](Header& h) { h.ring_count = 0; }).find("ring count"), std::string::npos);
  EXPECT_NE(refused([](Header& h) { h.ring_capacity = 12; }).find("capacity"), std::string::npos);
  EXPECT_NE(refused([](Header& h) { h.ring_stride += 8; }).find("stride"), std::string::npos);
  EXPECT_NE(refused([](Header& h) { h.total_size *= 2; }).find("size"), std::string::npos);
  // offset + size wraps past 2^64 back into the mapping: refused, not trusted.
  EXPECT_NE(refused([](Header& h) { h.rings_offset = UINT64_MAX - 4095; }).find("rings"),
            std::string::npos);
  EXPECT_NE(refused([](Header& h) { h.names_offset = 8; }).find("name log"), std::string::npos);
  EXPECT_NE(refused([](Header& h) { h.clock_kind = static_cast<ClockKind>(9); }).find("clock"),
            std::string::npos);
  Image ok;
  EXPECT_NO_THROW(ok.open());
}

TEST(ShmRegion, AnotherProtocolVersionIsNotCalledCorrupt) {
  Image img;
  img.header()->version = kProtocolVersion + 1;
  try {
    img.open();
    FAIL() << "opened a region of another protocol version";
  } catch (const RegionCorrupt&) {
    FAIL() << "another protocol version reported as corruption";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("protocol version"), std::string::npos);
  }
}

TEST(ShmRegion, DrainsEventsThroughItsOwnLayout) {
  Image img;
  ShmRegion region = img.open();
  RingControl* r = img.active_ring(2, 77);
  ring_push(r, kLayout.ring_capacity, {5, 0, 0, static_cast<uint8_t>(EventKind::WaitBegin), 0, 0});
  // The shared layout fields are never used again: a changed stride would
  // move ring 2, but the change itself is what gets reported.
  uint32_t seen_tid = 0;
  EXPECT_EQ(region.drain([&](uint32_t tid, uint32_t, const Event&) { seen_tid = tid; },
                         [](uint32_t, uint64_t) {}),
            1u);
  EXPECT_EQ(seen_tid, 77u);
  img.header()->ring_stride = 1u << 30;
  EXPECT_NE(corruption_of([&] { drain_all(region); }).find("header was overwritten"),
            std::string::npos);
  EXPECT_TRUE(region.corrupt());
  img.header()->ring_stride = static_cast<uint32_t>(ring_stride(kLayout.ring_capacity));
  // Once corrupt, never read again (even if the header looks right now).
  EXPECT_NE(corruption_of([&] { drain_all(region); }), "(no RegionCorrupt)");
  EXPECT_NE(corruption_of([&] { region.new_names(); }), "(no RegionCorrupt)");
}

TEST(ShmRegion, ShortWaitAcquireIsHandedOverAsItsTwoEvents) {
  Image img;
  ShmRegion region = img.open();
  RingControl* r = img.active_ring(0, 5);
  const uint64_t holder = 0x7f12'3456'7890;
  ring_push(r, kLayout.ring_capacity,
            {1000, holder | (uint64_t{40} << 48), 7,
             static_cast<uint8_t>(EventKind::ShortWaitAcquire), 1, 0});
  ring_push(r, kLayout.ring_capacity,
            {1500, holder, 8, static_cast<uint8_t>(EventKind::Release), 1, 0});
  std::vector<Event> seen;
  EXPECT_EQ(region.drain([&](uint32_t, uint32_t, const Event& ev) { seen.push_back(ev); },
                         [](uint32_t, uint64_t) {}),
            3u);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].kind, static_cast<uint8_t>(EventKind::WaitBegin));
  EXPECT_EQ(seen[0].ts, 960u);
  EXPECT_EQ(seen[0].seq, 0u);
  EXPECT_EQ(seen[0].gil, 1u);
  EXPECT_EQ(seen[1].kind, static_cast<uint8_t>(EventKind::Acquire));
  EXPECT_EQ(seen[1].ts, 1000u);
  EXPECT_EQ(seen[1].value, holder);
  EXPECT_EQ(seen[1].seq, 7u);
  EXPECT_EQ(seen[2].kind, static_cast<uint8_t>(EventKind::Release));
  EXPECT_EQ(region.max_fill(), 2u);  // ring records, not events
  // A wait reaching back before the clock's start is a lie.
  ring_push(r, kLayout.ring_capacity,
            {10, holder | (uint64_t{40} << 48), 9,
             static_cast<uint8_t>(EventKind::ShortWaitAcquire), 1, 0});
  EXPECT_NE(corruption_of([&] { drain_all(region); }).find("before the clock"), std::string::npos);
}

TEST(ShmRegion, LyingRingsEndTheSession) {
  auto corrupt_after = [](auto&& change) {
    Image img;
    ShmRegion region = img.open();
    RingControl* r = img.ring(1);
    r->state.store(static_cast<uint32_t>(RingState::Active));
    ring_push(r, kLayout.ring_capacity,
              {5, 0, 0, static_cast<uint8_t>(EventKind::WaitBegin), 0, 0});
    change(img, r);
    return corruption_of([&] { drain_all(region); });
  };
  EXPECT_NE(corrupt_after([](Image&, RingControl* r) { r->state.store(9); }).find("unknown state"),
            std::string::npos);
  EXPECT_NE(corrupt_after([](Image&, RingControl* r) {
              r->head.store(1'000'000);
            }).find("write position"),
            std::string::npos);
  EXPECT_NE(corrupt_after([](Image&, RingControl* r) { r->tail.store(1); }).find("read position"),
            std::string::npos);
  EXPECT_NE(corrupt_after([](Image&, RingControl* r) {
              ring_events(r)[0].kind = 0xee;
            }).find("unknown kind"),
            std::string::npos);
  EXPECT_NE(
      corrupt_after([](Image&, RingControl* r) { ring_events(r)[0].gil = 200; }).find("GIL 200"),
      std::string::npos);
}

TEST(ShmRegion, BoundsTheNameLogAndGilCount) {
  Image img;
  ShmRegion region = img.open();
  img.header()->name_head.store(UINT64_MAX);  // billions of "new" names: at most 8 read
  EXPECT_TRUE(region.new_names().empty());
  EXPECT_GE(region.names_lost(), UINT64_MAX - 8);  // counted, not read
  img.header()->name_head.store(3);                // and then backwards
  EXPECT_NE(corruption_of([&] { region.new_names(); }).find("moved backwards"), std::string::npos);

  Image img2;
  ShmRegion region2 = img2.open();
  img2.header()->gil_count.store(kMaxGils + 1);
  EXPECT_NE(corruption_of([&] { region2.gil_count(); }).find("GIL count"), std::string::npos);
}

TEST(ShmRegion, CreatedRegionIsSealedAtItsSize) {
  ShmRegion region = ShmRegion::create(kLayout, ClockKind::Monotonic);
  EXPECT_EQ(fcntl(region.fd(), F_GET_SEALS), kRegionSeals);
  EXPECT_NE(ftruncate(region.fd(), 0), 0);
  EXPECT_EQ(errno, EPERM);
  EXPECT_NE(ftruncate(region.fd(), kLayout.total_size * 2), 0);
  // And it is taken as a region through pidfd_getfd (from this very process).
  EXPECT_NO_THROW(ShmRegion::open_in_process(getpid(), region.fd()));
}

TEST(ShmRegion, OnlyASealedMemfdIsTaken) {
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  EXPECT_NE(corruption_of([&] {
              ShmRegion::open_in_process(getpid(), pipe_fds[0]);
            }).find("is a FIFO, not a memfd"),
            std::string::npos);
  close(pipe_fds[0]);
  close(pipe_fds[1]);
  // A memfd holding a valid region, but not sealed: refused before mapping.
  const int fd = memfd_create("gilstat", MFD_CLOEXEC);
  ASSERT_GE(fd, 0);
  Image img;
  ASSERT_EQ(write(fd, img.header(), kLayout.total_size), static_cast<ssize_t>(kLayout.total_size));
  EXPECT_NE(corruption_of([&] {
              ShmRegion::open_in_process(getpid(), fd);
            }).find("not sealed at its size"),
            std::string::npos);
  close(fd);
  // A closed fd number.
  EXPECT_NE(corruption_of([&] { ShmRegion::open_in_process(getpid(), 1000); }).find("closed"),
            std::string::npos);
}

// `gilstat drain`: the fd is inherited, not taken with pidfd_getfd; the same
// checks apply, and the caller's fd stays its own.
TEST(ShmRegion, InheritedFdIsCheckedLikeATakenOne) {
  ShmRegion region = ShmRegion::create(kLayout, ClockKind::Monotonic);
  {
    ShmRegion inherited = ShmRegion::open_inherited(region.fd());
    EXPECT_NE(inherited.fd(), region.fd());
    EXPECT_EQ(inherited.layout().layout.ring_count, kLayout.ring_count);
  }
  EXPECT_EQ(fcntl(region.fd(), F_GET_SEALS), kRegionSeals);  // still open
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  EXPECT_NE(
      corruption_of([&] { ShmRegion::open_inherited(pipe_fds[0]); }).find("is a FIFO, not a memfd"),
      std::string::npos);
  close(pipe_fds[0]);
  close(pipe_fds[1]);
  EXPECT_THROW(ShmRegion::open_inherited(1000), gilstat::Error);
}

TEST(ShmRegion, ScansOnlyTheRingsEverClaimed) {
  Image img;
  img.header()->rings_claimed.store(1);
  ShmRegion region = img.open();
  for (uint32_t i : {0u, 2u}) {
    RingControl* r = img.ring(i);
    r->tid = 70 + i;
    r->state.store(static_cast<uint32_t>(RingState::Active));
    ring_push(r, kLayout.ring_capacity,
              {5, 0, 0, static_cast<uint8_t>(EventKind::WaitBegin), 0, 0});
  }
  std::vector<uint32_t> tids;
  auto drain = [&] {
    return region.drain([&](uint32_t tid, uint32_t, const Event&) { tids.push_back(tid); },
                        [](uint32_t, uint64_t) {});
  };
  EXPECT_EQ(drain(), 1u);  // ring 2 is above the mark: not read yet
  EXPECT_EQ(tids, std::vector<uint32_t>{70});
  img.header()->rings_claimed.store(3);
  EXPECT_EQ(drain(), 1u);  // its events wait in the ring until then
  EXPECT_EQ(tids, (std::vector<uint32_t>{70, 72}));
  img.header()->rings_claimed.store(2);
  EXPECT_NE(corruption_of([&] { drain_all(region); }).find("went backwards"), std::string::npos);
  Image above;
  ShmRegion other = above.open();
  above.header()->rings_claimed.store(kLayout.ring_count + 1);
  EXPECT_NE(corruption_of([&] { drain_all(other); }).find("claimed-ring count"), std::string::npos);
}

TEST(ShmRegion, TakeFreesTheRingsForTheNextDrain) {
  Image img;
  ShmRegion region = img.open();
  RingControl* r = img.active_ring(1, 40);
  const uint32_t cap = kLayout.ring_capacity;
  auto wait_begin = [](uint64_t ts) {
    return Event{ts, 0, 0, static_cast<uint8_t>(EventKind::WaitBegin), 0, 0};
  };
  for (uint64_t ts = 1; ts <= cap; ++ts) ASSERT_TRUE(ring_push(r, cap, wait_begin(ts)));
  EXPECT_EQ(region.take(), cap);
  EXPECT_EQ(region.staged_events(), cap);
  // The ring has room for a whole ring's worth again before anyone drains.
  for (uint64_t ts = cap + 1; ts <= 2 * cap; ++ts) ASSERT_TRUE(ring_push(r, cap, wait_begin(ts)));
  // Its thread ends: the next take frees the ring and keeps its final totals.
  r->totals[0].acquisitions.store(3);
  r->state.store(static_cast<uint32_t>(RingState::Closed));
  EXPECT_EQ(region.take(), cap);
  EXPECT_EQ(r->state.load(), static_cast<uint32_t>(RingState::Free));
  std::vector<uint64_t> seen;
  std::vector<uint64_t> final_acquisitions;
  uint64_t drops = 0;
  EXPECT_EQ(region.drain([&](uint32_t tid, uint32_t, const Event& ev) {
              EXPECT_EQ(tid, 40u);
              seen.push_back(ev.ts);
            },
                         [&](uint32_t, uint64_t n) { drops += n; },
                         [&](const TotalsSnapshot& t) { final_acquisitions.push_back(t.acquisitions); }),
            2u * cap);
  ASSERT_EQ(seen.size(), 2u * cap);
  for (uint64_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], i + 1);
  EXPECT_EQ(drops, 0u);
  EXPECT_EQ(final_acquisitions, std::vector<uint64_t>{3});
  EXPECT_EQ(region.staged_events(), 0u);
}

TEST(ShmRegion, WhatWasTakenBeforeACorruptRingIsStillHandedOver) {
  Image img;
  ShmRegion region = img.open();
  RingControl* r = img.active_ring(0, 9);
  ring_push(r, kLayout.ring_capacity,
            {5, 0, 0, static_cast<uint8_t>(EventKind::WaitBegin), 0, 0});
  EXPECT_EQ(region.take(), 1u);
  ring_push(r, kLayout.ring_capacity, {6, 0, 0, 0xee, 0, 0});
  uint64_t handed = 0;
  EXPECT_NE(corruption_of([&] {
              region.drain([&](uint32_t, uint32_t, const Event&) { ++handed; },
                           [](uint32_t, uint64_t) {});
            }).find("unknown kind"),
            std::string::npos);
  EXPECT_EQ(handed, 1u);
  EXPECT_NE(corruption_of([&] { region.take(); }), "(no RegionCorrupt)");
}

TEST(ShmRegion, RingTakerKeepsEveryEventInOrder) {
  // A producer that never lets its tiny ring overflow only if someone keeps
  // emptying it; the consumer drains rarely, so the taker must.
  Image img;
  ShmRegion region = img.open();
  RingControl* r = img.active_ring(3, 11);
  constexpr uint64_t kEvents = 50'000;
  std::atomic<bool> done{false};
  std::thread producer([&] {
    for (uint64_t ts = 1; ts <= kEvents; ++ts) {
      while (r->head.load() - r->tail.load() >= kLayout.ring_capacity) std::this_thread::yield();
      ring_push(r, kLayout.ring_capacity,
                {ts, 0, 0, static_cast<uint8_t>(EventKind::WaitBegin), 0, 0});
    }
    done = true;
  });
  uint64_t next = 1;
  bool in_order = true;
  {
    RingTaker taker(region);
    while (!done) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      region.drain([&](uint32_t, uint32_t, const Event& ev) { in_order &= ev.ts == next++; },
                   [](uint32_t, uint64_t) {});
    }
  }
  producer.join();
  region.drain([&](uint32_t, uint32_t, const Event& ev) { in_order &= ev.ts == next++; },
               [](uint32_t, uint64_t) {});
  EXPECT_TRUE(in_order);
  EXPECT_EQ(next, kEvents + 1);
  EXPECT_EQ(r->dropped.load(), 0u);
}

TEST(ShmRegion, PagesOfReadRingsGoBack) {
  // A real memfd region, written through a second mapping as the target would.
  constexpr Layout layout = make_layout(2, 4096, 8);  // 96 KiB of slots per ring
  ShmRegion region = ShmRegion::create(layout, ClockKind::Monotonic);
  void* target = mmap(nullptr, layout.total_size, PROT_READ | PROT_WRITE, MAP_SHARED,
                      region.fd(), 0);
  ASSERT_NE(target, MAP_FAILED);
  auto* base = static_cast<char*>(target);
  auto ring_at = [&](uint32_t i) {
    return reinterpret_cast<RingControl*>(base + layout.rings_offset +
                                          ring_stride(layout.ring_capacity) * i);
  };
  const size_t page = 4096;
  auto resident_pages = [&](RingControl* r) {
    // The whole pages of its slots that are in memory.
    const auto begin = reinterpret_cast<uintptr_t>(ring_events(r));
    const uintptr_t lo = (begin + page - 1) & ~(page - 1);
    const uintptr_t hi = (begin + layout.ring_capacity * sizeof(Event)) & ~(page - 1);
    std::vector<unsigned char> vec((hi - lo) / page);
    EXPECT_EQ(mincore(reinterpret_cast<void*>(lo), hi - lo, vec.data()), 0);
    size_t n = 0;
    for (unsigned char v : vec) n += v & 1;
    return n;
  };
  reinterpret_cast<Header*>(base)->rings_claimed.store(2);
  RingControl* slow = ring_at(0);
  RingControl* ended = ring_at(1);
  for (RingControl* r : {slow, ended}) {
    r->tid = r == slow ? 1 : 2;
    r->state.store(static_cast<uint32_t>(RingState::Active));
    for (uint64_t ts = 1; ts <= 3000; ++ts)
      ring_push(r, layout.ring_capacity,
                {ts, 0, 0, static_cast<uint8_t>(EventKind::WaitBegin), 0, 0});
  }
  const size_t written = resident_pages(slow);
  EXPECT_GE(written, 3000 * sizeof(Event) / page - 1);
  ended->state.store(static_cast<uint32_t>(RingState::Closed));
  EXPECT_EQ(region.take(), 3000u);  // the fullest ring
  // Read, and more than half a ring ahead of its writer: back (the slots it
  // reaches within half a ring stay).  Exited: all of it back.
  EXPECT_LE(resident_pages(slow), (3000 - 4096 / 2) * sizeof(Event) / page + 2);
  EXPECT_LT(resident_pages(slow), written / 2);
  EXPECT_EQ(resident_pages(ended), 0u);
  EXPECT_EQ(drain_all(region), 6000u);
  munmap(target, layout.total_size);
}

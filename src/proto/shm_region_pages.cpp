// What of the region stays resident in the target (docs/region.md, "What
// stays resident"): the CLI gives back the pages of rings it has read and
// their thread will not write for a while.  A page of the memfd, once
// written, is charged to the target's memory cgroup until then.
#include <sys/mman.h>

#include <algorithm>

#include "gilstat/ring.hpp"
#include "proto/shm_region.hpp"

namespace gilstat::proto {

void ShmRegion::release_pages(uint32_t i, uint64_t from, uint64_t to) {
  const uint32_t capacity = layout_.layout.ring_capacity;
  if (to <= from) return;
  if (to - from > capacity) from = to - capacity;
  char* events = reinterpret_cast<char*>(ring_events(ring(i)));
  // [from, to) in ring positions is at most two runs of slots.
  auto release = [&](uint64_t first_slot, uint64_t slots) {
    const auto begin = reinterpret_cast<uintptr_t>(events + first_slot * sizeof(Event));
    const uintptr_t end = begin + slots * sizeof(Event);
    const uintptr_t page = 4096;
    const uintptr_t lo = (begin + page - 1) & ~(page - 1), hi = end & ~(page - 1);
    // Fails harmlessly (EINVAL) on memory that is not a shared mapping (tests).
    if (hi > lo) madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_REMOVE);
  };
  const uint64_t first = from & (capacity - 1);
  const uint64_t n = to - from;
  release(first, std::min<uint64_t>(n, capacity - first));
  if (first + n > capacity) release(0, first + n - capacity);
}

void ShmRegion::release_drained_pages(uint32_t i, uint64_t now_ns) {
  // A ring's pages stay charged to the target's memory once written.  A
  // thread that writes little would keep its whole ring resident all the
  // same as its writes wrap around it, so once a second the pages it has
  // written and we have read are given back (MADV_REMOVE on the memfd); it
  // faults in a fresh page per 170 records when it comes round again.  Not
  // for a thread that wraps its ring within the second: it would fault all
  // the time, and its ring stays resident.  Only slots the producer cannot
  // reach for another half ring are released, so that it never writes into
  // a page while it goes.
  const uint32_t capacity = layout_.layout.ring_capacity;
  auto& [checked_ns, checked_pos] = release_check_[i];
  if (now_ns - checked_ns < 1'000'000'000) return;
  const uint64_t tail = tails_[i];
  const bool slow = tail - checked_pos < capacity;
  checked_ns = now_ns;
  checked_pos = tail;
  if (!slow) {
    released_to_[i] = tail;
    return;
  }
  const uint64_t head = ring(i)->head.load(std::memory_order_acquire);
  if (head - tail > capacity / 4) return;  // filling now: not a slow ring after all
  const uint64_t reach = head > capacity / 2 ? head - capacity / 2 : 0;
  release_pages(i, std::max(released_to_[i], reach), tail);
  released_to_[i] = tail;
}

}  // namespace gilstat::proto

// Single-producer single-consumer ring of fixed-size events, shared by the
// probe (producer: the thread that owns the ring) and the CLI (consumer).
//
// head and tail are free-running 64-bit counters; slot = counter & (cap - 1).
// The producer never blocks: when the ring is full it counts a drop and
// returns.  push() is async-signal-safe and allocation-free, so it may run on
// the probe's hook path.
#pragma once

#include <atomic>
#include <cstdint>

#include "gilstat/protocol.hpp"

namespace gilstat::proto {

inline Event* ring_events(RingControl* ctl) {
  return reinterpret_cast<Event*>(reinterpret_cast<char*>(ctl) + sizeof(RingControl));
}

// Producer side.  Returns false (and counts a drop) when the ring is full.
inline bool ring_push(RingControl* ctl, uint32_t capacity, const Event& ev) {
  const uint64_t head = ctl->head.load(std::memory_order_relaxed);
  const uint64_t tail = ctl->tail.load(std::memory_order_acquire);
  if (head - tail >= capacity) {
    // Single producer: a plain load + store is enough and avoids a locked RMW.
    ctl->dropped.store(ctl->dropped.load(std::memory_order_relaxed) + 1,
                       std::memory_order_relaxed);
    return false;
  }
  ring_events(ctl)[head & (capacity - 1)] = ev;
  ctl->head.store(head + 1, std::memory_order_release);
  return true;
}

// Consumer side: hands every available event to fn, then frees the slots.
// A head that moved impossibly far (corrupt or hostile region) is clamped to
// one ring's worth so the consumer never reads out of bounds or loops long.
template <typename Fn>
inline uint64_t ring_drain(RingControl* ctl, uint32_t capacity, Fn&& fn) {
  const uint64_t tail = ctl->tail.load(std::memory_order_relaxed);
  uint64_t head = ctl->head.load(std::memory_order_acquire);
  if (head - tail > capacity) head = tail + capacity;
  const Event* events = ring_events(ctl);
  for (uint64_t i = tail; i != head; ++i) fn(events[i & (capacity - 1)]);
  ctl->tail.store(head, std::memory_order_release);
  return head - tail;
}

}  // namespace gilstat::proto

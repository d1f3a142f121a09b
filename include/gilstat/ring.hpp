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
    ctl->dropped.store(ctl->dropped.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    return false;
  }
  ring_events(ctl)[head & (capacity - 1)] = ev;
  ctl->head.store(head + 1, std::memory_order_release);
  return true;
}

// What ring_drain returns when the ring's head cannot be right.
inline constexpr uint64_t kRingCorrupt = UINT64_MAX;

// Consumer side: hands every available event to fn, then frees the slots.
// `tail` is the consumer's own copy of the read position: only the consumer
// moves it, so a producer that scribbles over the shared `tail` cannot make
// it re-read or skip anything.  A head further ahead than one ring's worth
// (a corrupt or hostile producer) reads nothing and returns kRingCorrupt;
// otherwise the number of events handed over.
template <typename Fn>
inline uint64_t ring_drain(RingControl* ctl, uint32_t capacity, uint64_t& tail, Fn&& fn) {
  const uint64_t head = ctl->head.load(std::memory_order_acquire);
  if (head - tail > capacity) return kRingCorrupt;
  const Event* events = ring_events(ctl);
  for (uint64_t i = tail; i != head; ++i) fn(events[i & (capacity - 1)]);
  const uint64_t n = head - tail;
  tail = head;
  ctl->tail.store(head, std::memory_order_release);
  return n;
}

}  // namespace gilstat::proto

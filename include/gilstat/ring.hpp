// Single-producer single-consumer ring of fixed-size events, shared by the
// probe (producer: the thread that owns the ring) and the CLI (consumer).
//
// head and tail are free-running 64-bit counters; slot = counter & (cap - 1).
// The producer never blocks: when the ring is full it counts a drop and
// returns.  push() is async-signal-safe and allocation-free, so it may run on
// the probe's hook path; so is totals_add(), the thread's exact totals.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

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

// ring_push for the hook path: the same, with the event's fields stored
// straight into the slot as three 8-byte words.  An Event built on the stack
// and copied costs a failed store-to-load forward (byte and word stores read
// back as one 16-byte load) on every event: ~5 ns, a tenth of a GIL cycle's
// hooks.
inline bool ring_push_fields(RingControl* ctl, uint32_t capacity, uint64_t ts, uint64_t value,
                             uint32_t seq, uint8_t kind, uint8_t gil) {
  const uint64_t head = ctl->head.load(std::memory_order_relaxed);
  const uint64_t tail = ctl->tail.load(std::memory_order_acquire);
  if (head - tail >= capacity) {
    ctl->dropped.store(ctl->dropped.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    return false;
  }
  static_assert(offsetof(Event, seq) == 16 && offsetof(Event, kind) == 20 &&
                offsetof(Event, gil) == 21 && offsetof(Event, reserved) == 22);
  char* slot = reinterpret_cast<char*>(&ring_events(ctl)[head & (capacity - 1)]);
  const uint64_t tail_word =  // little-endian: seq, kind, gil, reserved = 0
      uint64_t{seq} | (uint64_t{kind} << 32) | (uint64_t{gil} << 40);
  std::memcpy(slot, &ts, 8);
  std::memcpy(slot + 8, &value, 8);
  std::memcpy(slot + 16, &tail_word, 8);
  ctl->head.store(head + 1, std::memory_order_release);
  return true;
}

// Producer side: adds one event of the ring's thread to its totals on the
// event's GIL (ThreadTotals), by the reconstruction rules the CLI applies
// to events (report/thread_timeline.cpp), so that the totals stay exact
// when a full ring loses the events.  Plain loads and stores: the thread is
// the only writer; the seqlock tells a reader to retry.  Allocation-free,
// no syscall: for the hook path.
inline void totals_add(proto::ThreadTotals& t, proto::EventKind kind, uint64_t ts) {
  using proto::EventKind;
  using S = proto::TotalsState;
  const auto state = static_cast<S>(t.state.load(std::memory_order_relaxed));
  const uint64_t since = t.since.load(std::memory_order_relaxed);
  S next = state;
  std::atomic<uint64_t>* bucket = nullptr;  // where [since, ts) goes
  switch (kind) {
    case EventKind::WaitBegin:
      next = S::Waiting;
      if (state == S::Released || state == S::Waiting) bucket = &t.released;
      break;
    case EventKind::Acquire:
      next = S::Holding;
      if (state == S::Waiting) bucket = &t.wait;
      break;
    case EventKind::Release:
      next = S::Released;
      if (state == S::Holding) bucket = &t.held;
      break;
    case EventKind::WaitAbort:
      next = S::Released;
      if (state == S::Waiting) bucket = &t.released;
      break;
    case EventKind::ForcedHandoff:
      // No state change; while released, the released stretch runs up to
      // it (the CLI ends a released thread's lifetime at its last event).
      if (state == S::Released) bucket = &t.released;
      break;
    default:
      return;  // DropRequest (counted per GIL), GilEnabled
  }
  const uint32_t s = t.seq.load(std::memory_order_relaxed);
  t.seq.store(s + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  if (state == S::None) {
    if (next != S::None) {
      t.first_ts.store(ts, std::memory_order_relaxed);
      t.since.store(ts, std::memory_order_relaxed);
    }
  } else {
    // A clock that ran backwards (it should not) adds no time.
    const uint64_t at = ts > since ? ts : since;
    if (bucket)
      bucket->store(bucket->load(std::memory_order_relaxed) + (at - since),
                    std::memory_order_relaxed);
    if (bucket || next != state) t.since.store(at, std::memory_order_relaxed);
  }
  if (kind == EventKind::Acquire)
    t.acquisitions.store(t.acquisitions.load(std::memory_order_relaxed) + 1,
                         std::memory_order_relaxed);
  if (kind == EventKind::ForcedHandoff)
    t.forced_handoffs.store(t.forced_handoffs.load(std::memory_order_relaxed) + 1,
                            std::memory_order_relaxed);
  t.state.store(static_cast<uint32_t>(next), std::memory_order_relaxed);
  t.seq.store(s + 2, std::memory_order_release);
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

// Consumer side: copies every available event to out (room for `capacity`
// events), then frees the slots at once, before the caller looks at any of
// them: however long the caller then takes, the producer has the whole ring
// again, and a producer that rewrites a slot meanwhile changes nothing the
// caller reads.  Returns the number copied, or kRingCorrupt as ring_drain.
inline uint64_t ring_take(RingControl* ctl, uint32_t capacity, uint64_t& tail, Event* out) {
  const uint64_t head = ctl->head.load(std::memory_order_acquire);
  if (head - tail > capacity) return kRingCorrupt;
  const Event* events = ring_events(ctl);
  const uint64_t n = head - tail;
  for (uint64_t i = 0; i < n; ++i) out[i] = events[(tail + i) & (capacity - 1)];
  tail = head;
  ctl->tail.store(head, std::memory_order_release);
  return n;
}

}  // namespace gilstat::proto

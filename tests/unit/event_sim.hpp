// Synthetic probe traffic for the aggregator tests: per-thread event streams
// as the probe's hooks emit them (docs/gil-internals.md, section 4), with per-GIL seq numbers,
// and delivery orders that mimic the CLI draining the rings.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <vector>

#include "gilstat/protocol.hpp"
#include "report/aggregator.hpp"

namespace gilstat::testing {

using proto::Event;
using proto::EventKind;

class EventScript {
 public:
  void wait_begin(uint32_t tid, uint64_t ts, uint8_t gil = 0) {
    push(tid, ts, EventKind::WaitBegin, 0, false, gil);
  }
  void acquire(uint32_t tid, uint64_t ts, uint64_t tstate, uint8_t gil = 0) {
    push(tid, ts, EventKind::Acquire, tstate, true, gil);
  }
  void release(uint32_t tid, uint64_t ts, uint64_t tstate, uint8_t gil = 0) {
    push(tid, ts, EventKind::Release, tstate, true, gil);
  }
  void drop_request(uint32_t tid, uint64_t ts, uint64_t holder, uint8_t gil = 0) {
    push(tid, ts, EventKind::DropRequest, holder, true, gil);
  }
  void forced_handoff(uint32_t tid, uint64_t ts, uint8_t gil = 0) {
    push(tid, ts, EventKind::ForcedHandoff, 0, false, gil);
  }
  void wait_abort(uint32_t tid, uint64_t ts, uint8_t gil = 0) {
    push(tid, ts, EventKind::WaitAbort, 0, false, gil);
  }
  void gil_enabled(uint32_t tid, uint64_t ts, uint32_t enabled, uint8_t gil = 0) {
    push(tid, ts, EventKind::GilEnabled, enabled, false, gil);
  }

  // Loses the first event matching pred, as a full ring would: its seq
  // stays consumed.  Returns whether one was found.
  template <typename Pred>
  bool lose_first(Pred pred) {
    for (auto& [tid, events] : rings_) {
      auto it = std::find_if(events.begin(), events.end(), pred);
      if (it != events.end()) {
        events.erase(it);
        return true;
      }
    }
    return false;
  }

  const std::map<uint32_t, std::vector<Event>>& rings() const { return rings_; }

  // Whole rings one after another (the worst reordering across threads).
  void deliver_by_thread(report::Aggregator& agg, bool reverse = false) const {
    auto deliver = [&](const auto& ring) {
      for (const Event& ev : ring.second) agg.add_event(ring.first, flags(ring.first), ev);
    };
    if (reverse) {
      std::for_each(rings_.rbegin(), rings_.rend(), deliver);
    } else {
      std::for_each(rings_.begin(), rings_.end(), deliver);
    }
  }

  // Random chunks of random rings, each ring in its own order: what a poller
  // draining rings at random moments sees.
  void deliver_interleaved(report::Aggregator& agg, uint64_t seed) const {
    std::mt19937_64 rng(seed);
    std::map<uint32_t, size_t> pos;
    std::vector<uint32_t> live;
    for (const auto& [tid, events] : rings_)
      if (!events.empty()) live.push_back(tid);
    while (!live.empty()) {
      const size_t pick = rng() % live.size();
      const uint32_t tid = live[pick];
      const auto& events = rings_.at(tid);
      const size_t n = 1 + rng() % 40;
      for (size_t k = 0; k < n && pos[tid] < events.size(); ++k)
        agg.add_event(tid, flags(tid), events[pos[tid]++]);
      if (pos[tid] == events.size()) live.erase(live.begin() + static_cast<long>(pick));
    }
  }

  // In timestamp order across threads (the order things happened).
  void deliver_in_time_order(report::Aggregator& agg) const {
    std::vector<std::pair<uint32_t, Event>> all;
    for (const auto& [tid, events] : rings_)
      for (const Event& ev : events) all.emplace_back(tid, ev);
    std::stable_sort(all.begin(), all.end(),
                     [](const auto& a, const auto& b) { return a.second.ts < b.second.ts; });
    for (const auto& [tid, ev] : all) agg.add_event(tid, flags(tid), ev);
  }

  void set_own_thread(uint32_t tid) { own_tid_ = tid; }

 private:
  uint32_t flags(uint32_t tid) const {
    return tid == own_tid_ ? uint32_t{proto::kRingOwnThread} : 0u;
  }

  void push(uint32_t tid, uint64_t ts, EventKind kind, uint64_t value, bool sequenced,
            uint8_t gil) {
    const uint32_t seq = sequenced ? ++seq_[gil] : 0;
    rings_[tid].push_back(Event{ts, value, seq, static_cast<uint8_t>(kind), gil, 0});
  }

  std::map<uint32_t, std::vector<Event>> rings_;
  std::map<uint8_t, uint32_t> seq_;
  uint32_t own_tid_ = 0;
};

// A random but self-consistent GIL history of n threads, with the numbers a
// correct reconstruction must find, computed here independently.
struct SimTruth {
  uint64_t window_end = 0;
  uint64_t initial_holder = 0;
  uint64_t switch_number_delta = 0;  // what CPython's gil->switch_number would say
  uint64_t acquisitions = 0;
  uint64_t drop_requests = 0;
  uint64_t forced_handoffs = 0;
  uint64_t hold_total = 0;
  std::map<uint32_t, uint64_t> held;  // per tid
  std::map<uint32_t, uint64_t> wait;  // per tid
};

inline SimTruth simulate_gil(EventScript& s, uint64_t seed, int threads, int steps) {
  enum class St { Released, Waiting, Holding };
  struct T {
    uint32_t tid;
    uint64_t tstate;
    St st = St::Released;
    uint64_t since = 0;
    bool seen = false;
  };
  std::mt19937_64 rng(seed);
  std::vector<T> th;
  for (int i = 0; i < threads; ++i)
    th.push_back({static_cast<uint32_t>(100 + i), 0x7f0000001000ULL * (i + 1)});
  SimTruth truth;
  truth.initial_holder = th[0].tstate;  // the main thread just dropped it
  uint64_t last_holder = truth.initial_holder;
  int holder = -1;
  bool drop_requested = false;
  uint64_t t = 1000;

  const auto take = [&](int i) {
    T& x = th[static_cast<size_t>(i)];
    t += 1 + rng() % 5;
    s.acquire(x.tid, t, x.tstate);
    truth.wait[x.tid] += t - x.since;
    ++truth.acquisitions;
    if (x.tstate != last_holder) ++truth.switch_number_delta;
    last_holder = x.tstate;
    x.st = St::Holding;
    x.since = t;
    holder = i;
  };
  const auto waiters = [&] {
    std::vector<int> w;
    for (int i = 0; i < threads; ++i)
      if (th[static_cast<size_t>(i)].st == St::Waiting) w.push_back(i);
    return w;
  };

  for (int step = 0; step < steps; ++step) {
    t += 1 + rng() % 200;
    const int i = static_cast<int>(rng() % static_cast<uint64_t>(threads));
    T& x = th[static_cast<size_t>(i)];
    const unsigned action = rng() % 10;
    if (x.st == St::Released && action < 1) {
      // 3.13+ signal_active_thread: lock/unlock of gil->mutex, no wait.
      s.wait_begin(x.tid, t);
      s.wait_abort(x.tid, t + 1);
      t += 1;
    } else if (x.st == St::Released) {
      s.wait_begin(x.tid, t);
      x.st = St::Waiting;
      x.since = t;
      if (holder < 0) take(i);
    } else if (x.st == St::Waiting && holder >= 0 && action < 5) {
      // The waiter's timed wait ran out: it asks the holder to drop.
      s.drop_request(x.tid, t, th[static_cast<size_t>(holder)].tstate);
      ++truth.drop_requests;
      drop_requested = true;
    } else if (x.st == St::Holding) {
      s.release(x.tid, t, x.tstate);
      truth.held[x.tid] += t - x.since;
      truth.hold_total += t - x.since;
      x.st = St::Released;
      x.since = t;
      holder = -1;
      const auto w = waiters();
      if (drop_requested && !w.empty()) {
        s.forced_handoff(x.tid, ++t);
        ++truth.forced_handoffs;
      }
      drop_requested = false;
      if (!w.empty()) take(w[rng() % w.size()]);
    }
  }
  truth.window_end = t + 500;
  for (const T& x : th) {
    if (x.st == St::Holding) {
      truth.held[x.tid] += truth.window_end - x.since;
      truth.hold_total += truth.window_end - x.since;
    } else if (x.st == St::Waiting) {
      truth.wait[x.tid] += truth.window_end - x.since;
    }
  }
  return truth;
}

}  // namespace gilstat::testing

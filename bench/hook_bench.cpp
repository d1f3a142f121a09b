// The probe's hook path on its own, in ns: what one GIL cycle costs the
// target beyond the pthread calls it makes anyway, and its parts (the clock
// read, a ring push).  Runs the real hooks (hooks.cpp, through the table the
// GOT patcher installs) on a GIL laid out as CPython lays it out, with real
// pthread objects at its offsets, recording into a region in this process
// whose ring is emptied every 1,024 cycles as the CLI would.
//
//   cmake --build build --target gilstat_hook_bench && build/bin/gilstat_hook_bench
//
// One cycle is the call sequence of drop_gil then take_gil when nobody else
// wants the GIL (3.8-3.15, docs/gil-internals.md): lock, signal(cond),
// unlock; lock, lock(switch_mutex), signal(switch_cond), unlock(switch_mutex),
// unlock.  BM_CycleHooked minus BM_CyclePlain is the hooks' cost per cycle.
#include <benchmark/benchmark.h>
#include <pthread.h>
#include <x86intrin.h>

#include <cstdlib>
#include <cstring>
#include <string_view>

#include "gilstat/cpython_layout.hpp"
#include "gilstat/protocol.hpp"
#include "gilstat/ring.hpp"
#include "got_patch.hpp"
#include "probe_state.hpp"

namespace {

using namespace gilstat;
using MutexFn = int (*)(pthread_mutex_t*);
using SignalFn = int (*)(pthread_cond_t*);

struct Calls {
  MutexFn lock, unlock;
  SignalFn signal;
};

// A GIL in this process, and a region the probe records into.
struct Fixture {
  static constexpr uint32_t kCapacity = proto::kDefaultRingCapacity;
  const cpython::GilFields& f = cpython::kGilDefault;
  alignas(64) unsigned char gil[256] = {};
  proto::Layout layout = proto::make_layout(4, kCapacity, 16);
  void* region = nullptr;
  Calls hooked{}, plain{};

  Fixture() {
    pthread_mutex_init(mutex(), nullptr);
    pthread_mutex_init(switch_mutex(), nullptr);
    pthread_cond_init(cond(f.cond), nullptr);
    pthread_cond_init(cond(f.switch_cond), nullptr);
    // A holder address below 2^48 and a switch count, as CPython keeps them.
    const uint64_t holder = 0x7f00'1234'5678;
    std::memcpy(gil + f.last_holder, &holder, 8);
    region = std::aligned_alloc(4096, layout.total_size);
    std::memset(region, 0, layout.total_size);
    probe::g.header = proto::init_header(region, layout, proto::ClockKind::Tsc);
    probe::g.ring_count = layout.ring_count;
    probe::g.ring_capacity = kCapacity;
    probe::g.ring_stride = proto::ring_stride(kCapacity);
    probe::g.rings = static_cast<char*>(region) + layout.rings_offset;
    probe::g.clock_tsc = true;
    probe::g.fields = f;
    const auto at = [&](uint32_t off) { return reinterpret_cast<uintptr_t>(gil + off); };
    probe::g.gils[0] = {at(0), at(f.mutex), at(f.cond), at(f.switch_cond)};
    probe::g.gil_count.store(1);
    if (!probe::resolve_real_functions()) std::abort();
    const probe::HookSpec* specs = nullptr;
    size_t n = 0;
    probe::hooks_table(&specs, &n);
    for (size_t i = 0; i < n; ++i) {
      const std::string_view name = specs[i].name;
      if (name == "pthread_mutex_lock") hooked.lock = reinterpret_cast<MutexFn>(specs[i].hook);
      if (name == "pthread_mutex_unlock") hooked.unlock = reinterpret_cast<MutexFn>(specs[i].hook);
      if (name == "pthread_cond_signal") hooked.signal = reinterpret_cast<SignalFn>(specs[i].hook);
    }
    if (!hooked.lock || !hooked.unlock || !hooked.signal) std::abort();
    plain = {&pthread_mutex_lock, &pthread_mutex_unlock, &pthread_cond_signal};
    probe::g.recording.store(1);
  }

  pthread_mutex_t* mutex() { return reinterpret_cast<pthread_mutex_t*>(gil + f.mutex); }
  pthread_mutex_t* switch_mutex() {
    return reinterpret_cast<pthread_mutex_t*>(gil + f.switch_mutex);
  }
  pthread_cond_t* cond(uint32_t off) { return reinterpret_cast<pthread_cond_t*>(gil + off); }

  // drop_gil, then take_gil with nobody waiting, through `c`.
  void cycle(const Calls& c) {
    int32_t locked = 0;
    c.lock(mutex());
    std::memcpy(gil + f.locked, &locked, 4);
    c.signal(cond(f.cond));
    c.unlock(mutex());
    c.lock(mutex());
    locked = 1;
    std::memcpy(gil + f.locked, &locked, 4);
    c.lock(switch_mutex());
    uint64_t switches;
    std::memcpy(&switches, gil + f.switch_number, 8);
    ++switches;
    std::memcpy(gil + f.switch_number, &switches, 8);
    c.signal(cond(f.switch_cond));
    c.unlock(switch_mutex());
    c.unlock(mutex());
  }

  // The CLI's part: empties every ring this thread may have claimed.
  void consume() {
    for (uint32_t i = 0; i < layout.ring_count; ++i) {
      auto* r = reinterpret_cast<proto::RingControl*>(probe::g.rings + probe::g.ring_stride * i);
      r->tail.store(r->head.load(std::memory_order_acquire), std::memory_order_release);
    }
  }

  uint64_t dropped() {
    uint64_t d = 0;
    for (uint32_t i = 0; i < layout.ring_count; ++i)
      d += reinterpret_cast<proto::RingControl*>(probe::g.rings + probe::g.ring_stride * i)
               ->dropped.load();
    return d;
  }
};

Fixture& fixture() {
  static Fixture fx;
  return fx;
}

void BM_CyclePlain(benchmark::State& state) {
  Fixture& fx = fixture();
  for (auto _ : state) fx.cycle(fx.plain);
}
BENCHMARK(BM_CyclePlain);

void BM_CycleHooked(benchmark::State& state) {
  Fixture& fx = fixture();
  fx.consume();
  const uint64_t dropped_before = fx.dropped();
  uint32_t n = 0;
  for (auto _ : state) {
    fx.cycle(fx.hooked);
    if (++n % 1024 == 0) fx.consume();
  }
  // Two records per cycle (Release, ShortWaitAcquire): a ring of 8,192 is
  // emptied long before it fills, so no cycle took the cheaper full-ring path.
  if (fx.dropped() != dropped_before) state.SkipWithError("ring full: events dropped");
}
BENCHMARK(BM_CycleHooked);

void BM_ClockRead(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(__rdtsc());
}
BENCHMARK(BM_ClockRead);

void BM_RingPush(benchmark::State& state) {
  Fixture& fx = fixture();
  auto* r = reinterpret_cast<proto::RingControl*>(probe::g.rings + probe::g.ring_stride * 3);
  const proto::Event ev{1, 2, 3, static_cast<uint8_t>(proto::EventKind::Release), 0, 0};
  uint32_t n = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(proto::ring_push(r, fx.kCapacity, ev));
    if (++n % 1024 == 0) r->tail.store(r->head.load());
  }
}
BENCHMARK(BM_RingPush);

}  // namespace

BENCHMARK_MAIN();

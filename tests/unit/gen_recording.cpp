// gilstat_gen_recording OUT EVENTS [THREADS] [SEED] [--tsc] [--cut BYTES]
//
// Writes a synthetic but self-consistent recording of EVENTS events: THREADS
// pure-Python-like threads taking turns on one GIL (drop request, forced
// hand-off, 5 ms switch interval with jitter), plus a native thread that
// re-acquires the GIL in short bursts.  For the large-file benchmark
// (`report` on 100 M events) and the tests that need a big file; never
// committed.  --cut stops writing after BYTES (a cut-off file, End missing).
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "proto/recording.hpp"

using namespace gilstat;
using proto::Event;
using proto::EventKind;

int main(int argc, char** argv) {
  std::vector<std::string> args;
  bool tsc = false;
  uint64_t cut = 0;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--tsc") == 0) {
      tsc = true;
    } else if (std::strcmp(argv[i], "--cut") == 0 && i + 1 < argc) {
      cut = std::strtoull(argv[++i], nullptr, 10);
    } else {
      args.push_back(argv[i]);
    }
  }
  if (args.size() < 2) {
    std::fprintf(stderr, "usage: %s OUT EVENTS [THREADS] [SEED] [--tsc] [--cut BYTES]\n", argv[0]);
    return 2;
  }
  const std::string out = args[0];
  const uint64_t total = std::strtoull(args[1].c_str(), nullptr, 10);
  const int threads = args.size() > 2 ? std::max(2, std::atoi(args[2].c_str())) : 4;
  std::mt19937_64 rng(args.size() > 3 ? std::strtoull(args[3].c_str(), nullptr, 10) : 1);
  // Ticks per ns: TSC-like 2.445 GHz, or nanoseconds.
  const double tpn = tsc ? 2.445 : 1.0;
  const auto ticks = [&](double ns) { return static_cast<uint64_t>(ns * tpn); };

  const uint32_t pid = 4000;
  proto::RecMeta meta;
  meta.pid = pid;
  meta.clock = tsc ? proto::ClockKind::Tsc : proto::ClockKind::Monotonic;
  meta.py_version_hex = 0x030b07f0;
  meta.libpython_shared = true;
  meta.py_version = "3.11.7";
  meta.command = "python3 synthetic.py";
  uint64_t t = ticks(1e9);
  meta.window_start = t;
  proto::WriterOptions wopts;
  if (const char* ce = std::getenv("GEN_CHUNK_EVENTS")) wopts.chunk_events = std::atoi(ce);
  if (const char* zl = std::getenv("GEN_ZSTD_LEVEL")) wopts.zstd_level = std::atoi(zl);
  proto::RecordingWriter w(out, meta, wopts);
  w.meta(meta);
  proto::RecGil gil{0, 0x7f0000001000, 100, 100, 0x7f0000002000, {0}};
  w.gil(gil);
  w.clock({t, static_cast<uint64_t>(t / tpn), 0});

  // Threads: pid + 1.. are Python threads; the last one is native.
  std::vector<uint32_t> tid(threads);
  std::vector<uint64_t> tstate(threads);
  for (int i = 0; i < threads; ++i) {
    tid[i] = pid + static_cast<uint32_t>(i);
    tstate[i] = 0x7f0000002000 + 0x1000 * static_cast<uint64_t>(i);
    w.name(tid[i], i == 0 ? "MainThread" : i + 1 == threads ? "" : "worker-" + std::to_string(i));
  }
  uint32_t seq = 0;
  uint64_t written = 0, switches = 0;
  const auto emit = [&](int i, EventKind k, uint64_t ts, uint64_t value, bool sequenced) {
    w.event(tid[i], 0, Event{ts, value, sequenced ? ++seq : 0, static_cast<uint8_t>(k), 0, 0});
    ++written;
  };
  // Everyone but thread 0 starts waiting; thread 0 holds.
  for (int i = 1; i < threads; ++i) emit(i, EventKind::WaitBegin, t + i, 0, false);
  emit(0, EventKind::WaitBegin, t + threads, 0, false);
  emit(0, EventKind::Acquire, t + threads + 10, tstate[0], true);
  t += ticks(1000);
  int holder = 0;
  uint64_t last_clock = t;
  std::uniform_real_distribution<double> u(0, 1);
  while (written + 12 < total) {
    const int next = (holder + 1 + static_cast<int>(rng() % (threads - 1))) % threads;
    const bool native = holder == threads - 1;
    if (native) {
      // A burst of short native re-acquisitions (PyGILState_Ensure/Release).
      for (int k = 0; k < 20 && written + 12 < total; ++k) {
        t += ticks(2000 + 3000 * u(rng));
        emit(holder, EventKind::Release, t, tstate[holder], true);
        t += ticks(500 + 2000 * u(rng));
        emit(holder, EventKind::WaitBegin, t, 0, false);
        t += ticks(20 + 100 * u(rng));
        emit(holder, EventKind::Acquire, t, tstate[holder], true);
      }
    }
    // The waiter's timed wait runs out: a forced switch.
    t += ticks(5e6 * (0.8 + 0.4 * u(rng)));
    emit(next, EventKind::DropRequest, t, tstate[holder], true);
    t += ticks(1000 + 40000 * u(rng) * u(rng));
    emit(holder, EventKind::Release, t, tstate[holder], true);
    emit(holder, EventKind::ForcedHandoff, t + ticks(200), 0, false);
    t += ticks(5000 + 20000 * u(rng));
    emit(next, EventKind::Acquire, t, tstate[next], true);
    emit(holder, EventKind::WaitBegin, t + ticks(300 + 500 * u(rng)), 0, false);
    holder = next;
    ++switches;
    if (t - last_clock > ticks(1e8)) {
      w.clock({t, static_cast<uint64_t>(t / tpn), 0});
      last_clock = t;
    }
    if (cut && w.bytes() >= cut) {
      // Leave the file as a killed writer would: no End record.
      std::fprintf(stderr, "cut after %llu bytes, %llu events\n",
                   static_cast<unsigned long long>(w.bytes()),
                   static_cast<unsigned long long>(written));
      _exit(0);
    }
  }
  gil.final_switch_number = gil.initial_switch_number + switches;
  w.gil(gil);
  w.end({t + ticks(1000), 1.0 / tpn, 0});
  w.close();
  std::fprintf(stderr, "%s: %llu events, %llu bytes (%.2f bytes/event)\n", out.c_str(),
               static_cast<unsigned long long>(written), static_cast<unsigned long long>(w.bytes()),
               static_cast<double>(w.bytes()) / static_cast<double>(written));
  return 0;
}

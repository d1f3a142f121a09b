#include "common/clock.hpp"

#include <time.h>
#include <x86intrin.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

namespace gilstat {

uint64_t monotonic_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + ts.tv_nsec;
}

proto::ClockKind choose_clock() {
  std::ifstream in("/sys/devices/system/clocksource/clocksource0/current_clocksource");
  std::string source;
  in >> source;
  const char* want = std::getenv("GILSTAT_CLOCK");
  if (want && std::strcmp(want, "monotonic") == 0) return proto::ClockKind::Monotonic;
  return source == "tsc" ? proto::ClockKind::Tsc : proto::ClockKind::Monotonic;
}

uint64_t read_clock(proto::ClockKind kind) {
  return kind == proto::ClockKind::Tsc ? __rdtsc() : monotonic_ns();
}

ClockCalibration::ClockCalibration(proto::ClockKind kind) : kind_(kind) { sample(); }

void ClockCalibration::sample() {
  if (kind_ != proto::ClockKind::Tsc) return;
  // Bracket the TSC read with two clock reads and keep the midpoint, so the
  // pair's error is half the (small) bracket.
  const uint64_t a = monotonic_ns();
  const uint64_t tsc = __rdtsc();
  const uint64_t b = monotonic_ns();
  const uint64_t ns = a + (b - a) / 2;
  if (tsc0_ == 0) {
    tsc0_ = tsc;
    ns0_ = ns;
  }
  tsc1_ = tsc;
  ns1_ = ns;
}

double ClockCalibration::ns_per_tick() const {
  if (kind_ != proto::ClockKind::Tsc) return 1.0;
  if (tsc1_ <= tsc0_ || ns1_ <= ns0_) return 1.0;
  return static_cast<double>(ns1_ - ns0_) / static_cast<double>(tsc1_ - tsc0_);
}

}  // namespace gilstat

// The CLI's view of the probe's clock: which one to use, reading it, and
// converting raw units to nanoseconds.
#pragma once

#include <cstdint>

#include "gilstat/protocol.hpp"

namespace gilstat {

// TSC only where the kernel's clocksource is "tsc": the kernel has then
// verified it is invariant and synchronised across CPUs.  GILSTAT_CLOCK=
// monotonic|tsc overrides (tsc is still refused where the kernel distrusts it).
proto::ClockKind choose_clock();

uint64_t read_clock(proto::ClockKind kind);
uint64_t monotonic_ns();

// Pairs (tsc, monotonic ns) taken by the CLI; the slope between the first
// and the last converts TSC ticks to nanoseconds.
class ClockCalibration {
 public:
  explicit ClockCalibration(proto::ClockKind kind);
  void sample();
  double ns_per_tick() const;

 private:
  proto::ClockKind kind_;
  uint64_t tsc0_ = 0, ns0_ = 0, tsc1_ = 0, ns1_ = 0;
};

}  // namespace gilstat

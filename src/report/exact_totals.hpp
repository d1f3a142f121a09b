// One thread's exact totals on one GIL: what the probe counted
// (proto::ThreadTotals), as a recording stores them and the aggregator
// uses them.  A header of its own so that the recording format needs no
// more of report/ than this struct.
#pragma once

#include <cstdint>

namespace gilstat::report {

// The stretch still running when they were read is closed at the window's
// end.  Raw clock units.
struct ExactTotals {
  uint32_t tid = 0;
  uint32_t ring_flags = 0;
  uint32_t gil = 0;
  uint64_t lifetime = 0;
  uint64_t held = 0;
  uint64_t wait = 0;
  uint64_t released = 0;
  uint64_t acquisitions = 0;
  uint64_t forced_handoffs = 0;
  bool operator==(const ExactTotals&) const = default;
};

}  // namespace gilstat::report

// The line that sends a user from `top` or `report` to `gilstat dump`: a
// GIL held with no release for longer than kStuckHoldNs while other threads
// wait for it is what a hung program looks like from the GIL's side, and
// only a snapshot of every thread's stack says why.
#pragma once

#include <optional>
#include <string>

#include "report/report.hpp"

namespace gilstat::report {

inline constexpr double kStuckHoldNs = 5e9;

// The hint for GIL `g` of `r`, or nullopt when it does not look stuck.
std::optional<std::string> stuck_hint(const Report& r, const GilReport& g);

}  // namespace gilstat::report

// `top`'s stack lines: the long holds running now (their holder's innermost
// Python frame and innermost native frame, from the latest stack taken) and
// the functions that held the GIL in the interval (the held-time profile of
// the interval's samples, weighted by the interval's exact held times).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "report/gil_profile.hpp"
#include "stacks/stack_table.hpp"

namespace gilstat::cli {

// A hold past the hog threshold that another thread waits for, now.
struct TopLongHold {
  uint32_t tid = 0, gil = 0;
  std::string thread;  // its name ("" when unknown)
  double for_ns = 0;   // held so far
  bool stack_taken = false;
  std::optional<stacks::Frame> python;  // innermost Python frame
  std::optional<stacks::Frame> native;  // innermost native frame (see innermost_native)
};

// The innermost native frame of a merged stack (innermost first) outside
// the C library, the dynamic loader and the vDSO: the code that called them
// (a spin reading the clock is in its own function, not in clock_gettime);
// the innermost native frame when every one is there; nullopt without any.
std::optional<stacks::Frame> innermost_native(const std::vector<stacks::Frame>& stack);
std::optional<stacks::Frame> innermost_python(const std::vector<stacks::Frame>& stack);

// "LONG HOLD" lines (one per hold, longest first) and, when the interval
// has samples, a title and up to max_functions lines of the profile.
std::vector<std::string> top_stack_lines(const std::vector<TopLongHold>& holds,
                                         const report::GilProfile& interval, double interval_s,
                                         size_t max_functions);

// `top --json`'s "long_holds": [{"tid": int, "gil": int, "thread": str,
// "held_s": float, "stack_taken": bool, "python": FRAME|null,
// "native": FRAME|null}], FRAME as in the report's hogs stacks.
std::string long_holds_json(const std::vector<TopLongHold>& holds);

}  // namespace gilstat::cli

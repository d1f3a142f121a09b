// The native halves of the demo workloads, free of the Python API so their
// timing and correctness do not depend on the interpreter around them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace gilstat::demo {

// CLOCK_MONOTONIC, the clock gilstat's reports use by default.
uint64_t now_ns();
uint32_t current_tid();

// Burns the CPU until the deadline.  Spinning (not sleeping) is what makes
// "holds the GIL for exactly X" exact: the scheduler cannot stretch it.
void spin_until(uint64_t deadline_ns);
// Absolute deadline, so that late wake-ups do not accumulate over periods.
void sleep_until(uint64_t deadline_ns);

// The CPU work of `hold` and `release`: `passes` passes over a buffer of `n`
// 32-bit values (kept small enough to stay in a core's cache, so two
// threads scale with two cores instead of fighting over memory bandwidth).
uint64_t sum_buffer(size_t n, uint64_t passes);

struct AtomicsResult {
  std::vector<uint32_t> tids;
  uint64_t increments = 0;   // Σ fetch_add on the shared counter
  uint64_t pushed = 0;       // values pushed into the shared queue
  uint64_t popped = 0;       // values popped from it (incl. the final drain)
  bool checksum_ok = false;  // Σ popped values == Σ pushed values
};
// `threads` native threads share one atomic counter and one bounded
// lock-free MPMC queue for `seconds`.  Nothing here knows about Python.
AtomicsResult run_atomics(unsigned threads, double seconds);

}  // namespace gilstat::demo

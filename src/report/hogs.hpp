// Long holds ("GIL hogs"): holds that another thread waited for, longer
// than the recording's hog threshold, whose holder's stack was taken while
// it still held (stacks::SampleReason::LongHold; cli/hog_watcher.hpp).
// A recording is read in each thread's order, threads interleaved: a long
// hold is known from its first stack sample (written while it lasted, so
// before its Release and before the Acquire that ended any wait it caused:
// a chunk of the file has its samples before its events); its end is its
// holder's first Release after its start, and the waits it caused are the
// other threads' waits on the same GIL that overlap it (matched against
// the kRecentHolds latest long holds).
//
// Per merged stack: how many long holds it was seen in, their time, the
// longest, the waiting they caused and who waited.  A hold seen at several
// stacks (it moved) has its time split at its samples: up to the second
// sample under the first stack, and so on, the last stack to the end; its
// caused waiting is split in the same shares.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "gilstat/protocol.hpp"
#include "stacks/stack_table.hpp"

namespace gilstat::report {

struct Report;

struct HogEntry {
  std::vector<stacks::Frame> stack;  // merged, innermost first
  uint64_t holds = 0;                // long holds seen at this stack
  double held_ns = 0;                // their time at this stack
  double longest_ns = 0;             // the longest of those holds, whole
  double caused_wait_ns = 0;         // other threads' waiting overlapping them
  std::vector<std::string> waiting;  // the threads kept waiting ("name (tid)"), at most kWaiters
  static constexpr size_t kWaiters = 8;
};

// Where long holds ended: the stack of a hold's last sample (the holder
// was still there when the hold was last seen), with the holds that ended
// there and their whole time.  The module table charges them to the
// extension module whose code that stack was in (modules.hpp).
struct HogEnd {
  std::vector<std::string> objects;  // the native frames' objects, innermost first
  uint64_t holds = 0;
  double held_ns = 0;
};

struct HogsReport {
  uint64_t holds = 0;    // long holds with a stack in the window
  uint64_t samples = 0;  // their stacks
  uint64_t lost = 0;     // holds past kMaxHolds (left out)
  double held_ns = 0;    // Σ entries' held_ns
  double caused_wait_ns = 0;
  std::vector<HogEntry> entries;  // by held time; at most kEntries (the text shows fewer)
  static constexpr size_t kEntries = 1000;
  std::vector<HogEnd> ends;  // every hold counted in `holds`, by its last stack
};

class HogCounter {
 public:
  void add_sample(const stacks::Sample& s);
  void add_events(uint32_t tid, const proto::Event* events, size_t n);
  // window_end: raw clock, the end of a hold still open.
  HogsReport finish(const Report& r, const stacks::StackTable& table, uint64_t window_end) const;

  static constexpr size_t kMaxHolds = 1u << 16;
  static constexpr size_t kMaxSamplesPerHold = 256;
  static constexpr size_t kMaxWaitsPerHold = 4096;
  static constexpr size_t kRecentHolds = 64;  // per GIL, matched against each wait's end

 private:
  struct Wait {
    uint32_t tid;
    uint64_t begin, end;
  };
  struct Hold {
    uint32_t tid = 0;
    uint8_t gil = 0;
    uint64_t start = 0, end = 0;  // end 0: not seen (still holding at the window's end)
    std::vector<std::pair<uint64_t, uint32_t>> samples;  // (ts, stack), in order
    std::vector<Wait> waits;
  };
  std::vector<Hold> holds_;
  std::map<std::tuple<uint32_t, uint8_t, uint64_t>, size_t> by_start_;  // (tid, gil, start)
  std::map<std::pair<uint32_t, uint8_t>, std::vector<size_t>> open_;    // holds without end
  std::unordered_map<uint64_t, uint64_t> wait_begin_;                   // (tid << 8 | gil) -> ts
  uint64_t lost_ = 0;
};

}  // namespace gilstat::report

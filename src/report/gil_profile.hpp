// Where the GIL's held time goes, by Python function.  While recording, the
// CLI reads the GIL holder's Python stack at a steady rate (a sample:
// stacks::SampleReason::Profile).  Sampling says *where* a thread was, the
// probe says exactly *how long* it held the GIL: each thread's samples share
// its exact held time equally, so its entries add up to its held time, and
// a thread never sampled (its holds all fell between samples) is shown as
// such rather than spread over others.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "stacks/stack_table.hpp"

namespace gilstat::report {

struct Report;
struct ThreadReport;

struct ProfileEntry {
  std::string function;
  std::string file;
  uint32_t line = 0;    // the line of the function with the most self time
  double self_ns = 0;   // held while this function was the innermost Python frame
  double total_ns = 0;  // held while it was anywhere on the stack
};

struct GroupProfile {
  std::string group;  // the threads' group key (groups.hpp)
  double held_ns = 0;
  std::vector<ProfileEntry> functions;  // by self time, at most kGroupEntries
};

struct FoldedStack {
  std::string stack;  // "group;outer;...;inner", root first (flamegraph order)
  double held_ns = 0;
};

struct GilProfile {
  uint64_t samples = 0;            // profile samples of the window's threads
  double sampled_held_ns = 0;      // held time of threads with samples
  double unsampled_held_ns = 0;    // held time of threads with none
  std::vector<ProfileEntry> functions;  // by self time, at most kEntries
  std::vector<GroupProfile> groups;     // groups with samples, by held time
  std::vector<FoldedStack> folded;      // every stack (and "(not sampled)"), for export
  static constexpr size_t kEntries = 50;
  static constexpr size_t kGroupEntries = 10;
};

// Counts samples as they arrive (a recording being read, or live), bounded.
class ProfileCounter {
 public:
  void add(const stacks::Sample& s);
  uint64_t lost() const { return lost_; }  // past kMaxKeys distinct (thread, GIL, stack)
  GilProfile finish(const Report& r, const stacks::StackTable& table) const;

  static constexpr size_t kMaxKeys = 1u << 20;

 private:
  std::map<std::tuple<uint32_t, uint32_t, uint32_t>, uint64_t> counts_;  // (tid, gil, stack)
  uint64_t lost_ = 0;
};

}  // namespace gilstat::report

// Stacks as gilstat keeps them: frames interned once, stacks as lists of
// frame ids (innermost first), both bounded so that a hostile recording or
// target cannot grow them without end.  Shared by what takes stacks (the
// CLI's readers of a live target), the recording (which stores frames and
// stacks once and samples by id) and the report (profiles, long holds).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace gilstat::stacks {

enum class FrameKind : uint8_t { Python = 1, Native = 2 };

struct Frame {
  FrameKind kind = FrameKind::Python;
  std::string function;  // Python: qualname; native: symbol, or empty when none covers it
  std::string file;      // Python: co_filename; native: empty
  uint32_t line = 0;     // Python: line number (0 unknown)
  std::string object;    // native: the mapped object's file name
  uint64_t offset = 0;   // native: address - object's load bias (shown when no symbol)
  auto key() const { return std::tie(kind, function, file, line, object, offset); }
  bool operator<(const Frame& o) const { return key() < o.key(); }
  bool operator==(const Frame& o) const { return key() == o.key(); }
};

// "render_page (app.py:12)", "sum_native (_demo.so)", "_demo.so+0x1a2b".
std::string describe(const Frame& f);

// One element of a folded stack ("a;b;c N", flamegraph.pl's input): ';'
// separates frames and the last space the weight, so a ';' or a line break
// inside a name is replaced.
std::string folded_text(const std::string& s);

inline constexpr uint32_t kMaxFrames = 1u << 20;
inline constexpr uint32_t kMaxStacks = 1u << 20;
inline constexpr uint32_t kMaxDepth = 512;
inline constexpr size_t kMaxFrameText = 1024;  // per string field

class StackTable {
 public:
  // The id of a frame / stack, adding it when new; nullopt when the table
  // is full (the caller counts that sample as lost).
  std::optional<uint32_t> frame_id(const Frame& f);
  std::optional<uint32_t> stack_id(const std::vector<uint32_t>& frame_ids);

  // What a reader of a recording was told: an id it defines.  false when
  // the id is out of order or out of bounds (a damaged file).
  bool define_frame(uint32_t id, Frame f);
  bool define_stack(uint32_t id, std::vector<uint32_t> frame_ids);

  const Frame* frame(uint32_t id) const { return id < frames_.size() ? &frames_[id] : nullptr; }
  const std::vector<uint32_t>* stack(uint32_t id) const {
    return id < stacks_.size() ? &stacks_[id] : nullptr;
  }
  size_t frame_count() const { return frames_.size(); }
  size_t stack_count() const { return stacks_.size(); }

 private:
  std::vector<Frame> frames_;
  std::map<Frame, uint32_t> frame_ids_;
  std::vector<std::vector<uint32_t>> stacks_;
  std::map<std::vector<uint32_t>, uint32_t> stack_ids_;
};

// Why a stack was taken.
enum class SampleReason : uint8_t {
  Profile = 1,   // the GIL holder's Python stack at the profile rate
  LongHold = 2,  // the holder of a hold longer than the hog threshold, still holding
};

struct Sample {
  uint32_t tid = 0;
  uint32_t gil = 0;
  uint64_t ts = 0;     // raw clock, as events
  uint32_t stack = 0;  // id in the StackTable
  SampleReason reason = SampleReason::Profile;
  uint64_t hold_start = 0;  // LongHold: the acquisition of the hold (raw clock)
};

}  // namespace gilstat::stacks

#include "stacks/merge.hpp"

#include <string_view>

namespace gilstat::stacks {

bool is_eval_loop(const Frame& f) {
  if (f.kind != FrameKind::Native) return false;
  for (std::string_view name :
       {"_PyEval_EvalFrameDefault", "PyEval_EvalFrameEx", "_PyEval_EvalFrame", "PyEval_EvalFrame",
        "_PyEval_Vector", "_PyEval_EvalCode", "PyEval_EvalCode", "_PyEval_EvalCodeWithName"})
    if (f.function == name) return true;
  return false;
}

std::vector<Frame> merge_stacks(const std::vector<Frame>& native, const std::vector<Frame>& python,
                                const std::string& interpreter) {
  if (python.empty()) return native;
  size_t cut = native.size();
  for (size_t i = 0; i < native.size(); ++i)
    if (is_eval_loop(native[i])) {
      cut = i;
      break;
    }
  if (cut == native.size()) {
    // No eval loop by name (a stripped interpreter): the first frame of the
    // interpreter's object once a frame of another object was seen.
    bool other = false;
    for (size_t i = 0; i < native.size(); ++i) {
      const bool own = native[i].object == interpreter;
      if (!own) other = true;
      if (own && other) {
        cut = i;
        break;
      }
    }
    if (cut == native.size()) cut = native.empty() ? 0 : 1;
  }
  std::vector<Frame> out(native.begin(), native.begin() + static_cast<long>(cut));
  out.insert(out.end(), python.begin(), python.end());
  return out;
}

}  // namespace gilstat::stacks

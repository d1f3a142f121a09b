#include "stacks/stack_table.hpp"

#include <fmt/core.h>

namespace gilstat::stacks {

std::string folded_text(const std::string& s) {
  std::string out = s;
  for (char& c : out)
    if (c == ';')
      c = ':';
    else if (c == '\n' || c == '\r')
      c = ' ';
  return out;
}

std::string describe(const Frame& f) {
  if (f.kind == FrameKind::Python) {
    const std::string fn = f.function.empty() ? "?" : f.function;
    if (f.file.empty()) return fn;
    return f.line ? fmt::format("{} ({}:{})", fn, f.file, f.line)
                  : fmt::format("{} ({})", fn, f.file);
  }
  if (!f.function.empty())
    return f.object.empty() ? f.function : fmt::format("{} ({})", f.function, f.object);
  return fmt::format("{}+{:#x}", f.object.empty() ? "?" : f.object, f.offset);
}

namespace {
Frame bounded(Frame f) {
  for (std::string* s : {&f.function, &f.file, &f.object})
    if (s->size() > kMaxFrameText) s->resize(kMaxFrameText);
  return f;
}
}  // namespace

std::optional<uint32_t> StackTable::frame_id(const Frame& raw) {
  Frame f = bounded(raw);
  if (auto it = frame_ids_.find(f); it != frame_ids_.end()) return it->second;
  if (frames_.size() >= kMaxFrames) return std::nullopt;
  const auto id = static_cast<uint32_t>(frames_.size());
  frame_ids_.emplace(f, id);
  frames_.push_back(std::move(f));
  return id;
}

std::optional<uint32_t> StackTable::stack_id(const std::vector<uint32_t>& ids) {
  std::vector<uint32_t> s(ids.begin(), ids.begin() + std::min<size_t>(ids.size(), kMaxDepth));
  for (uint32_t id : s)
    if (id >= frames_.size()) return std::nullopt;
  if (auto it = stack_ids_.find(s); it != stack_ids_.end()) return it->second;
  if (stacks_.size() >= kMaxStacks) return std::nullopt;
  const auto id = static_cast<uint32_t>(stacks_.size());
  stack_ids_.emplace(s, id);
  stacks_.push_back(std::move(s));
  return id;
}

bool StackTable::define_frame(uint32_t id, Frame f) {
  if (id != frames_.size() || id >= kMaxFrames) return false;
  f = bounded(std::move(f));
  frame_ids_.emplace(f, id);
  frames_.push_back(std::move(f));
  return true;
}

bool StackTable::define_stack(uint32_t id, std::vector<uint32_t> ids) {
  if (id != stacks_.size() || id >= kMaxStacks || ids.size() > kMaxDepth) return false;
  for (uint32_t f : ids)
    if (f >= frames_.size()) return false;
  stack_ids_.emplace(ids, id);
  stacks_.push_back(std::move(ids));
  return true;
}

}  // namespace gilstat::stacks

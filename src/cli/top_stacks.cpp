#include "cli/top_stacks.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "report/fit_name.hpp"
#include "report/render_json.hpp"
#include "report/utf8.hpp"

namespace gilstat::cli {
namespace {

bool system_object(const std::string& object) {
  for (const char* prefix :
       {"libc.so", "libc-", "libpthread", "ld-linux", "ld-musl", "linux-vdso", "[vdso]", "libm.so"})
    if (object.rfind(prefix, 0) == 0) return true;
  return false;
}

std::string frame_json(const std::optional<stacks::Frame>& f) {
  if (!f) return "null";
  return fmt::format(
      R"({{"kind": "{}", "function": {}, "file": {}, "line": {}, "object": {}, "offset": {}}})",
      f->kind == stacks::FrameKind::Python ? "python" : "native", report::json_string(f->function),
      report::json_string(f->file), f->line, report::json_string(f->object), f->offset);
}

}  // namespace

std::optional<stacks::Frame> innermost_native(const std::vector<stacks::Frame>& stack) {
  std::optional<stacks::Frame> first;
  for (const stacks::Frame& f : stack) {
    if (f.kind != stacks::FrameKind::Native) continue;
    if (!first) first = f;
    if (!system_object(f.object)) return f;
  }
  return first;
}

std::optional<stacks::Frame> innermost_python(const std::vector<stacks::Frame>& stack) {
  for (const stacks::Frame& f : stack)
    if (f.kind == stacks::FrameKind::Python) return f;
  return std::nullopt;
}

std::vector<std::string> top_stack_lines(const std::vector<TopLongHold>& holds,
                                         const report::GilProfile& interval, double interval_s,
                                         size_t max_functions) {
  std::vector<std::string> lines;
  std::vector<const TopLongHold*> sorted;
  for (const TopLongHold& h : holds) sorted.push_back(&h);
  std::stable_sort(sorted.begin(), sorted.end(), [](const TopLongHold* a, const TopLongHold* b) {
    return a->for_ns > b->for_ns;
  });
  for (const TopLongHold* h : sorted) {
    std::string where = "(no stack taken yet)";
    if (h->stack_taken) {
      where = "in " + (h->native ? stacks::describe(*h->native) : std::string("(no native frame)"));
      if (h->python) where += " ← " + stacks::describe(*h->python);
    }
    const std::string who = h->thread.empty() ? fmt::format("tid {}", h->tid)
                                              : fmt::format("{} ({})", h->thread, h->tid);
    lines.push_back(fmt::format("LONG HOLD GIL {}: {} for {:.3f} s, {}", h->gil,
                                report::printable(who), h->for_ns / 1e9, report::printable(where)));
  }
  if (interval.functions.empty() || max_functions == 0) return lines;
  if (!lines.empty()) lines.push_back("");
  // HELD%: of the interval's wall time, as the thread rows' HELD%.
  const double wall_ns = interval_s > 0 ? interval_s * 1e9 : 1;
  lines.push_back(fmt::format("{:<32} {:>6} {:>6}  {}", "FUNCTION (held in the interval)", "SELF%",
                              "TOTAL%", "FILE:LINE"));
  for (size_t i = 0; i < std::min(max_functions, interval.functions.size()); ++i) {
    const report::ProfileEntry& e = interval.functions[i];
    // A function that was never innermost has no line of its own.
    lines.push_back(
        fmt::format("{} {:>6.1f} {:>6.1f}  {}{}",
                    report::pad(report::fit_name(report::printable(e.function), 32), 32, false),
                    100 * e.self_ns / wall_ns, 100 * e.total_ns / wall_ns,
                    report::printable(e.file), e.line ? fmt::format(":{}", e.line) : ""));
  }
  return lines;
}

std::string long_holds_json(const std::vector<TopLongHold>& holds) {
  std::string out = "[";
  for (size_t i = 0; i < holds.size(); ++i) {
    const TopLongHold& h = holds[i];
    out += fmt::format(
        R"({}{{"tid": {}, "gil": {}, "thread": {}, "held_s": {:.6f}, "stack_taken": {}, )"
        R"("python": {}, "native": {}}})",
        i ? ", " : "", h.tid, h.gil, report::json_string(h.thread), h.for_ns / 1e9, h.stack_taken,
        frame_json(h.python), frame_json(h.native));
  }
  return out + "]";
}

}  // namespace gilstat::cli

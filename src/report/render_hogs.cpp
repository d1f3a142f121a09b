#include "report/render_hogs.hpp"

#include <fmt/format.h>

#include <cmath>

#include "report/render_json.hpp"
#include "report/render_text.hpp"
#include "report/utf8.hpp"

namespace gilstat::report {
std::vector<std::string> hogs_section(const Report& r, size_t entries, size_t frames) {
  const HogsReport& h = r.hogs;
  if (h.holds == 0) return {};
  std::vector<std::string> out;
  out.push_back("");
  out.push_back(fmt::format(
      "GIL hogs ({} long hold{} while another thread waited, {:.3f} s; stacks taken while "
      "they held; caused {:.3f} s of waiting)",
      h.holds, h.holds == 1 ? "" : "s", h.held_ns / 1e9, h.caused_wait_ns / 1e9));
  out.push_back(fmt::format("  {:>6} {:>9} {:>9} {:>9}  STACK (innermost first)", "HOLDS", "HELD s",
                            "LONGEST s", "CAUSED s"));
  for (size_t i = 0; i < h.entries.size() && i < entries; ++i) {
    const HogEntry& e = h.entries[i];
    const std::string first =
        e.stack.empty() ? "(stack missing)" : printable(stacks::describe(e.stack[0]));
    out.push_back(fmt::format("  {:>6} {:>9.3f} {:>9.3f} {:>9.3f}  {}", e.holds, e.held_ns / 1e9,
                              e.longest_ns / 1e9, e.caused_wait_ns / 1e9, first));
    for (size_t f = 1; f < e.stack.size() && f < frames; ++f)
      out.push_back(fmt::format("  {:>38}  {}", "", printable(stacks::describe(e.stack[f]))));
    if (e.stack.size() > frames)
      out.push_back(fmt::format("  {:>38}  ({} more frames)", "", e.stack.size() - frames));
    if (!e.waiting.empty()) {
      std::string who;
      for (const std::string& w : e.waiting) who += (who.empty() ? "" : ", ") + printable(w);
      out.push_back(fmt::format("  {:>38}  kept waiting: {}", "", who));
    }
  }
  if (h.lost)
    out.push_back(fmt::format("  {} long holds past the counter's bound left out", h.lost));
  return out;
}

std::string hogs_json(const Report& r) {
  const HogsReport& h = r.hogs;
  fmt::memory_buffer b;
  auto it = std::back_inserter(b);
  fmt::format_to(it,
                 R"({{"holds": {}, "samples": {}, "lost": {}, "held_s": {}, "caused_wait_s": {}, )"
                 R"("entries": [)",
                 h.holds, h.samples, h.lost, json_number(h.held_ns / 1e9),
                 json_number(h.caused_wait_ns / 1e9));
  for (size_t i = 0; i < h.entries.size(); ++i) {
    const HogEntry& e = h.entries[i];
    fmt::format_to(it,
                   R"({}{{"holds": {}, "held_s": {}, "longest_s": {}, "caused_wait_s": {}, )"
                   R"("waiting": [)",
                   i ? ", " : "", e.holds, json_number(e.held_ns / 1e9),
                   json_number(e.longest_ns / 1e9), json_number(e.caused_wait_ns / 1e9));
    for (size_t w = 0; w < e.waiting.size(); ++w)
      fmt::format_to(it, "{}{}", w ? ", " : "", json_string(e.waiting[w]));
    fmt::format_to(it, R"(], "stack": [)");
    for (size_t f = 0; f < e.stack.size(); ++f) {
      const stacks::Frame& fr = e.stack[f];
      fmt::format_to(
          it,
          R"({}{{"kind": "{}", "function": {}, "file": {}, "line": {}, "object": {}, "offset": {}}})",
          f ? ", " : "", fr.kind == stacks::FrameKind::Python ? "python" : "native",
          json_string(fr.function), json_string(fr.file), fr.line, json_string(fr.object),
          fr.offset);
    }
    fmt::format_to(it, "]}}");
  }
  fmt::format_to(it, "]}}");
  return fmt::to_string(b);
}

void render_hogs_collapsed(const Report& r, std::ostream& out) {
  for (const HogEntry& e : r.hogs.entries) {
    const auto ns = static_cast<uint64_t>(std::llround(std::max(0.0, e.held_ns)));
    if (ns == 0) continue;
    std::string s = "long holds";
    for (auto f = e.stack.rbegin(); f != e.stack.rend(); ++f)
      s += ";" + stacks::folded_text(stacks::describe(*f));
    out << printable(s) << ' ' << ns << '\n';
  }
}

}  // namespace gilstat::report

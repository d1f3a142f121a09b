#include "report/render_profile.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "report/render_json.hpp"
#include "report/render_text.hpp"
#include "report/utf8.hpp"

namespace gilstat::report {
namespace {

// "render_page  app.py:12" (a file name only: the directory rarely helps here).
std::string where(const ProfileEntry& e) {
  std::string file = e.file;
  if (const auto slash = file.rfind('/'); slash != std::string::npos) file = file.substr(slash + 1);
  std::string s = printable(e.function.empty() ? "?" : e.function);
  if (!file.empty()) s += "  " + printable(file) + (e.line ? fmt::format(":{}", e.line) : "");
  return s;
}

std::string entry_line(const ProfileEntry& e, double all_held_ns, const char* indent) {
  const double share = all_held_ns > 0 ? 100.0 * e.self_ns / all_held_ns : 0;
  return fmt::format("{}{:>9.3f} {:>6.1f} {:>9.3f}  {}", indent, e.self_ns / 1e9, share,
                     e.total_ns / 1e9, where(e));
}

void put_entries(fmt::memory_buffer& b, const std::vector<ProfileEntry>& entries,
                 double all_held_ns) {
  auto it = std::back_inserter(b);
  fmt::format_to(it, "[");
  for (size_t i = 0; i < entries.size(); ++i) {
    const ProfileEntry& e = entries[i];
    fmt::format_to(it,
                   R"({}{{"function": {}, "file": {}, "line": {}, "held_s": {}, "total_s": {}, )"
                   R"("share": {}}})",
                   i ? ", " : "", json_string(e.function), json_string(e.file), e.line,
                   json_number(e.self_ns / 1e9), json_number(e.total_ns / 1e9),
                   json_number(all_held_ns > 0 ? e.self_ns / all_held_ns : 0.0));
  }
  fmt::format_to(it, "]");
}

}  // namespace

std::vector<std::string> profile_section(const Report& r, size_t entries) {
  const GilProfile& p = r.gil_profile;
  if (p.samples == 0) return {};
  const double all = p.sampled_held_ns + p.unsampled_held_ns;
  std::vector<std::string> out;
  out.push_back("");
  out.push_back(fmt::format(
      "GIL held by function ({} samples of the holder's Python stack; each thread's samples "
      "share its exact held time)",
      format_count(p.samples)));
  out.push_back("   HELD s  HELD%   TOTAL s  FUNCTION (self: innermost Python frame)");
  for (size_t i = 0; i < p.functions.size() && i < entries; ++i)
    out.push_back(entry_line(p.functions[i], all, "  "));
  if (p.groups.size() > 1)
    for (size_t g = 0; g < p.groups.size() && g < 3; ++g) {
      out.push_back(fmt::format("  {} (held {:.3f} s):", printable(p.groups[g].group),
                                p.groups[g].held_ns / 1e9));
      for (size_t i = 0; i < p.groups[g].functions.size() && i < 3; ++i)
        out.push_back(entry_line(p.groups[g].functions[i], all, "    "));
    }
  if (p.unsampled_held_ns > 0)
    out.push_back(fmt::format(
        "  not sampled: {:.3f} s held by threads whose holds all fell between samples",
        p.unsampled_held_ns / 1e9));
  return out;
}

std::string profile_json(const Report& r) {
  const GilProfile& p = r.gil_profile;
  const double all = p.sampled_held_ns + p.unsampled_held_ns;
  fmt::memory_buffer b;
  auto it = std::back_inserter(b);
  fmt::format_to(it, R"({{"samples": {}, "sampled_held_s": {}, "unsampled_held_s": {}, "functions": )",
                 p.samples, json_number(p.sampled_held_ns / 1e9),
                 json_number(p.unsampled_held_ns / 1e9));
  put_entries(b, p.functions, all);
  fmt::format_to(it, R"(, "groups": [)");
  for (size_t g = 0; g < p.groups.size(); ++g) {
    fmt::format_to(it, R"({}{{"group": {}, "held_s": {}, "functions": )", g ? ", " : "",
                   json_string(p.groups[g].group), json_number(p.groups[g].held_ns / 1e9));
    put_entries(b, p.groups[g].functions, all);
    fmt::format_to(it, "}}");
  }
  fmt::format_to(it, "]}}");
  return fmt::to_string(b);
}

void render_collapsed(const Report& r, std::ostream& out) {
  for (const FoldedStack& f : r.gil_profile.folded) {
    const auto ns = static_cast<uint64_t>(std::llround(std::max(0.0, f.held_ns)));
    if (ns > 0) out << printable(f.stack) << ' ' << ns << '\n';
  }
}

}  // namespace gilstat::report

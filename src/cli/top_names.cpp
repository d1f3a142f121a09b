// TOP'S OWN MINIMAL NAME FITTING, to be merged with the text report's helper
// (same rule: never cut a name below the part that tells its group apart).
#include "cli/top_names.hpp"

#include <algorithm>
#include <vector>

#include "report/utf8.hpp"

namespace gilstat::cli {

std::string sanitize(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    char32_t cp;
    i += report::utf8_decode(s, i, cp);
    if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0)) cp = report::kReplacementChar;
    report::utf8_append(out, cp);
  }
  return out;
}

namespace {

std::vector<char32_t> code_points(const std::string& s) {
  std::vector<char32_t> out;
  for (size_t i = 0; i < s.size();) {
    char32_t cp;
    i += report::utf8_decode(s, i, cp);
    out.push_back(cp);
  }
  return out;
}

std::string join(const std::vector<char32_t>& cps, size_t from, size_t to) {
  std::string out;
  for (size_t i = from; i < to && i < cps.size(); ++i) report::utf8_append(out, cps[i]);
  return out;
}

// Where the part that must survive cutting starts: " (target)" at the end,
// else the last separator before trailing digits ("_12" of
// "ThreadPoolExecutor-0_12"); cps.size() when there is none.
size_t kept_tail(const std::vector<char32_t>& cps) {
  if (!cps.empty() && cps.back() == U')') {
    for (size_t i = cps.size() - 1; i-- > 0;)
      if (cps[i] == U'(') return i > 0 && cps[i - 1] == U' ' ? i - 1 : i;
  }
  size_t i = cps.size();
  while (i > 0 && cps[i - 1] >= U'0' && cps[i - 1] <= U'9') --i;
  if (i == cps.size()) return cps.size();
  return i > 0 ? i - 1 : i;
}

// Characters kept before "…" of a name without digits (its whole name is its
// group's: a long one is cut anyway).
constexpr size_t kMinHead = 15;

}  // namespace

size_t display_width(const std::string& s) { return code_points(s).size(); }

std::string clip_to_width(const std::string& s, size_t width) {
  if (!width) return s;
  const auto cps = code_points(s);
  return cps.size() <= width ? s : join(cps, 0, width);
}

size_t min_name_width(const std::string& name) {
  const auto cps = code_points(name);
  const size_t tail_at = kept_tail(cps);
  if (tail_at == cps.size()) return std::min(cps.size(), kMinHead + 1);
  if (cps.back() == U')') return std::min(cps.size(), cps.size() - tail_at + 2);
  // "ThreadPoolExecutor-0_12": the text before the first digit names the
  // kind, the tail the member.
  size_t head = 0;
  while (head < cps.size() && !(cps[head] >= U'0' && cps[head] <= U'9')) ++head;
  return std::min(cps.size(), head + 1 + (cps.size() - tail_at));
}

std::string fit_name(const std::string& name, size_t width) {
  const auto cps = code_points(name);
  if (cps.size() <= width) return name;
  const size_t tail_at = kept_tail(cps);
  const size_t tail = cps.size() - tail_at;
  if (tail && tail + 2 <= width)
    return join(cps, 0, width - tail - 1) + "…" + join(cps, tail_at, cps.size());
  if (width == 0) return "";
  return join(cps, 0, width - 1) + "…";  // narrower than the rule allows: the caller's choice
}

}  // namespace gilstat::cli

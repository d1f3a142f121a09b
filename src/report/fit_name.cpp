#include "report/fit_name.hpp"

#include <algorithm>

#include "report/utf8.hpp"

namespace gilstat::report {
namespace {

constexpr char32_t kEllipsis = U'…';

std::u32string decode(std::string_view s) {
  std::u32string out;
  for (size_t i = 0; i < s.size();) {
    char32_t cp;
    i += utf8_decode(s, i, cp);
    out += cp;
  }
  return out;
}

std::string encode(std::u32string_view s) {
  std::string out;
  for (char32_t cp : s) utf8_append(out, cp);
  return out;
}

bool is_digit(char32_t c) { return c >= U'0' && c <= U'9'; }

// A name as head + kept tail.  The tail is a trailing " ×4,812" (a group's
// count) and before it a parenthesised target (with its leading space).
struct Parts {
  std::u32string_view head, tail;
  bool target = false;
};

Parts split(std::u32string_view n) {
  size_t end = n.size();
  size_t i = end;
  while (i > 0 && (is_digit(n[i - 1]) || n[i - 1] == U',')) --i;
  if (i < end && i >= 2 && n[i - 1] == U'×' && n[i - 2] == U' ') end = i - 2;
  Parts p{n, {}, false};
  size_t start = end;
  if (end > 0 && n[end - 1] == U')') {
    int depth = 0;
    for (size_t j = end; j-- > 0;) {
      if (n[j] == U')') {
        ++depth;
      } else if (n[j] == U'(' && --depth == 0) {
        // A name that is all target has no head to cut: no target then.
        const size_t s = j > 0 && n[j - 1] == U' ' ? j - 1 : j;
        if (s > 0) {
          start = s;
          p.target = true;
        }
        break;
      }
    }
  }
  p.head = n.substr(0, start);
  p.tail = n.substr(start);
  return p;
}

// The text before the first digit: the thread's kind ("Thread-", "native-").
size_t kind_length(std::u32string_view head) {
  return static_cast<size_t>(std::find_if(head.begin(), head.end(), is_digit) - head.begin());
}

// First and last characters with "…" between, in `width` columns.
std::u32string cut_middle(std::u32string_view s, size_t width) {
  if (s.size() <= width) return std::u32string(s);
  if (width == 0) return {};
  const size_t keep = width - 1;
  const size_t front = (keep + 1) / 2;
  const size_t back = keep - front;
  return std::u32string(s.substr(0, front)) + kEllipsis + std::u32string(s.substr(s.size() - back));
}

// The head in `width` columns: the kind whole and the end of the counter
// when there is room for that, else its middle cut.
std::u32string cut_head(std::u32string_view head, size_t width) {
  if (head.size() <= width) return std::u32string(head);
  const size_t kind = kind_length(head);
  if (kind < head.size() && width >= kind + 1) {
    const size_t back = width - kind - 1;
    return std::u32string(head.substr(0, kind)) + kEllipsis +
           std::u32string(head.substr(head.size() - back));
  }
  return cut_middle(head, width);
}

}  // namespace

size_t text_columns(std::string_view text) { return decode(text).size(); }

std::string pad(std::string_view text, size_t width, bool right) {
  const std::string spaces(width - std::min(width, text_columns(text)), ' ');
  return right ? spaces + std::string(text) : std::string(text) + spaces;
}

std::string clip_columns(std::string_view text, size_t width) {
  const std::u32string t = decode(text);
  if (!width || t.size() <= width) return std::string(text);
  return encode(t.substr(0, width));
}

std::string fit_name(std::string_view name, size_t width) {
  const std::u32string n = decode(name);
  if (n.size() <= width) return std::string(name);
  const Parts p = split(n);
  if (!p.head.empty() && width >= p.tail.size() + 1)
    return encode(cut_head(p.head, width - p.tail.size()) + std::u32string(p.tail));
  return encode(cut_middle(n, width));
}

size_t min_name_width(std::string_view name) {
  const std::u32string n = decode(name);
  const Parts p = split(n);
  if (p.head.empty()) return n.size();
  if (p.target) return std::min(n.size(), p.tail.size() + 2);
  const size_t kind = kind_length(p.head);
  if (kind == p.head.size()) return n.size();  // no digits: all of it tells the group
  return std::min(n.size(), kind + 1 + p.tail.size());
}

}  // namespace gilstat::report

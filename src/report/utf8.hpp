// Decoding of untrusted UTF-8 (thread names and command lines come from the
// target, and a 48-byte name slot may cut a character in half).  Shared by
// the JSON escaper and the text renderer's sanitiser.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace gilstat::report {

inline constexpr char32_t kReplacementChar = 0xFFFD;

// Decodes the character at s[i] into cp and returns how many bytes it used
// (>= 1).  A malformed, overlong or surrogate sequence gives U+FFFD and 1.
size_t utf8_decode(std::string_view s, size_t i, char32_t& cp);

void utf8_append(std::string& out, char32_t cp);

// Text safe for a terminal: control characters (an escape sequence in a
// thread name) become '?', bad UTF-8 becomes U+FFFD.
std::string printable(std::string_view s);

}  // namespace gilstat::report

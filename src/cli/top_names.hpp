// Thread names on top's screen.  TOP'S OWN MINIMAL VERSION, to be merged
// with the text report's name-fitting helper: the rule is the same, cut a
// name only when the width forces it and never below the part that tells
// its group apart ("Thread-1904 (proces…" says nothing).
#pragma once

#include <cstddef>
#include <string>

namespace gilstat::cli {

// Display columns of a sanitised string: one per code point (wide East
// Asian characters are counted as one: a known limit).
size_t display_width(const std::string& s);
// Control characters and malformed UTF-8 become U+FFFD, so a thread name
// cannot move the cursor or change the terminal's state.
std::string sanitize(const std::string& s);
// `name` in at most `width` columns.  A name that fits is kept whole.  A
// name ending in " (target)" keeps that part, which tells its group apart,
// and loses characters before it ("Thread-19… (process_request_thread)");
// other names keep the text before their first digit and their last
// digits ("ThreadPoolExecutor-…_345").
std::string fit_name(const std::string& name, size_t width);
// The narrowest width fit_name() cuts `name` to without losing the part
// that tells its group apart.
size_t min_name_width(const std::string& name);

// The first `width` display columns of s (0: all of it).
std::string clip_to_width(const std::string& s, size_t width);

}  // namespace gilstat::cli

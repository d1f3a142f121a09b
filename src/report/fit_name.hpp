// Fitting thread names into a table column without losing what they say.
//
// A cut at the end ("Thread-1904 (proces…") keeps the least useful part: a
// service's thread names are "<kind>-<counter>" with, for threads started
// with a target, the function in parentheses ("Thread-1904
// (process_request_thread)"), and a group row adds its size
// ("Thread-N (process_request_thread) ×4,812").  So the parenthesised target
// and the " ×count" are kept whole; the cut goes into the counter, after the
// kind ("ThreadPoolExecutor-…12"), or into the middle of the part before the
// target ("Thr…04 (process_request_thread)").
//
// Widths count code points: names are expected sanitised (no control
// characters), as the text renderer does before fitting them.  Self-contained
// (no Report types), for any table that shows thread names.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace gilstat::report {

// Columns `text` takes: its number of code points (bad UTF-8 bytes count one each).
size_t text_columns(std::string_view text);

// `text` padded with spaces to `width` columns, on the left (right = true,
// for numbers) or on the right.  Never cut: a cell wider than its column
// shifts the rest of the line rather than lose digits.
std::string pad(std::string_view text, size_t width, bool right);

// The first `width` columns of `text` (all of it for width 0): the last
// resort of a screen that must not wrap.
std::string clip_columns(std::string_view text, size_t width);

// `name` in at most `width` columns, cut as described above; unchanged when
// it fits.  Below min_name_width(name) the cut has to take from the kept
// parts too (the middle of the whole name): callers that can choose the
// width should not go below that.
std::string fit_name(std::string_view name, size_t width);

// The fewest columns that still tell name's group apart: the target and the
// count whole with one character before them; without a target, the kind (the
// text before the first digit) and "…"; a name without digits (a group key,
// "MainThread") is its own distinguishing part and is never cut.  At most
// text_columns(name).
size_t min_name_width(std::string_view name);

}  // namespace gilstat::report

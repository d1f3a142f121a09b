// Options shared by the commands that print thread rows (report, run,
// demo, top): how many rows, and how wide the terminal is.
#pragma once

#include <cstddef>
#include <string>

#include "report/render_text.hpp"

namespace CLI {
class App;
}

namespace gilstat::cli {

// --max-threads N|all as given on the command line ("" when not given).
struct MaxThreadsOption {
  std::string text;
};

void add_max_threads_option(CLI::App& command, MaxThreadsOption& option);

// Rows to show: kDefaultMaxRows when not given, 0 for "all".  Anything but a
// positive integer or "all" is a usage error.
size_t parse_max_threads(const MaxThreadsOption& option);

// Text options for a report printed to file descriptor fd: the rows asked
// for (a given --max-threads lifts the default line limit) and, when fd is a
// terminal, its width (names are cut only to fit a terminal).
report::TextOptions text_options(const MaxThreadsOption& option, int fd);

// Columns of the terminal on fd; 0 when fd is not a terminal.
size_t terminal_columns(int fd);

}  // namespace gilstat::cli

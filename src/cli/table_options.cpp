#include "cli/table_options.hpp"

#include <fmt/core.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <charconv>

#include "common/error.hpp"

namespace gilstat::cli {

void add_max_threads_option(CLI::App& command, MaxThreadsOption& option) {
  command.add_option("--max-threads", option.text,
                     fmt::format("Thread rows to print, a folded group being one (default {}); "
                                 "`all`: every thread",
                                 report::kDefaultMaxRows));
}

size_t parse_max_threads(const MaxThreadsOption& option) {
  const std::string& s = option.text;
  if (s.empty()) return report::kDefaultMaxRows;
  if (s == "all") return 0;
  size_t n = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec != std::errc() || end != s.data() + s.size() || n == 0)
    throw Error(fmt::format("--max-threads '{}' is not a number of rows", s),
                "give a positive number, or `all` for every thread", kExitUsage);
  return n;
}

report::TextOptions text_options(const MaxThreadsOption& option, int fd) {
  report::TextOptions text;
  text.max_threads = parse_max_threads(option);
  if (!option.text.empty()) text.max_lines = 0;
  text.width = terminal_columns(fd);
  return text;
}

size_t terminal_columns(int fd) {
  if (!isatty(fd)) return 0;
  winsize ws{};
  if (ioctl(fd, TIOCGWINSZ, &ws) != 0 || ws.ws_col == 0) return 0;
  return ws.ws_col;
}

}  // namespace gilstat::cli

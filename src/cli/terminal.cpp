#include "cli/terminal.hpp"

#include <signal.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <atomic>
#include <iostream>

namespace gilstat::cli {
namespace {

std::atomic<bool> g_resized{false};

void on_winch(int) { g_resized.store(true); }

winsize window_size() {
  winsize ws{};
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) != 0 || ws.ws_col == 0 || ws.ws_row == 0) {
    ws.ws_col = 80;
    ws.ws_row = 24;
  }
  return ws;
}

}  // namespace

Terminal::Terminal(bool full_screen) : full_screen_(full_screen) {
  if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved_) == 0) {
    termios raw = saved_;
    raw.c_lflag &= ~(ICANON | ECHO);
    raw.c_cc[VMIN] = 0;
    raw.c_cc[VTIME] = 0;
    raw_ = tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
  }
  if (full_screen_) {
    struct sigaction sa {};
    sa.sa_handler = on_winch;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGWINCH, &sa, nullptr);
    std::cout << "\033[?1049h\033[?25l" << std::flush;  // alternate screen, cursor hidden
  }
}

Terminal::~Terminal() {
  if (full_screen_) std::cout << "\033[?25h\033[?1049l" << std::flush;
  if (raw_) tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
}

std::string Terminal::keys() {
  std::string out;
  if (!raw_) return out;
  char buf[64];
  ssize_t n;
  while ((n = read(STDIN_FILENO, buf, sizeof buf)) > 0) {
    for (ssize_t i = 0; i < n; ++i) {
      if (buf[i] == '\033') break;  // an escape sequence: the rest of this read is its tail
      out += buf[i];
    }
  }
  return out;
}

bool Terminal::resized() { return g_resized.exchange(false); }

size_t Terminal::width() const { return window_size().ws_col; }
size_t Terminal::height() const { return window_size().ws_row; }

void Terminal::draw(const std::vector<std::string>& lines) const {
  std::string frame = "\033[H";
  for (size_t i = 0; i < lines.size(); ++i) {
    frame += lines[i];
    frame += "\033[K";  // clear the rest of the line
    if (i + 1 < lines.size()) frame += "\r\n";
  }
  frame += "\033[J";  // and every line below
  std::cout << frame << std::flush;
}

}  // namespace gilstat::cli

// The terminal side of `gilstat top`: raw, non-echoing stdin for single
// keys, the window's size (re-read after SIGWINCH), and a full-screen
// drawing mode that gives the user's screen back on exit.
#pragma once

#include <termios.h>

#include <cstddef>
#include <string>
#include <vector>

namespace gilstat::cli {

class Terminal {
 public:
  // Raw mode only when stdin is a terminal; full screen (the alternate
  // screen, cursor hidden) only when `full_screen`.  Both undone on
  // destruction.
  explicit Terminal(bool full_screen);
  ~Terminal();
  Terminal(const Terminal&) = delete;
  Terminal& operator=(const Terminal&) = delete;

  // The keys pressed since the last call (escape sequences, e.g. arrows,
  // are dropped whole).
  std::string keys();
  // True once after each SIGWINCH.
  bool resized();
  // Columns and lines of stdout's terminal; 80x24 when unknown.
  size_t width() const;
  size_t height() const;
  // Draws `lines` from the top-left corner, clearing what the previous
  // frame left; never writes past the last line (no scrolling).
  void draw(const std::vector<std::string>& lines) const;

 private:
  termios saved_{};
  bool raw_ = false;
  bool full_screen_ = false;
};

}  // namespace gilstat::cli

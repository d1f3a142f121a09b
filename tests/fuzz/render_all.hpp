// Both fuzz targets end the same way: the report through every renderer,
// so a hostile input also reaches the text and JSON code.
#pragma once

#include <sstream>

#include "report/render_json.hpp"
#include "report/render_profile.hpp"
#include "report/render_text.hpp"

namespace gilstat::fuzz {

inline void render_all(const report::Report& r) {
  std::ostringstream out;
  report::render_json(r, out);
  report::TextOptions text;
  text.histograms = true;
  text.findings = true;
  report::render_text(r, out, text);
  report::render_collapsed(r, out);
}

}  // namespace gilstat::fuzz

// The catalogue of `gilstat demo`: each bundled demo, what it runs, and the
// checks that judge what gilstat measured against the script's own truth.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "cli/demo_session.hpp"
#include "cli/demo_truth.hpp"

namespace gilstat::cli::demo {

// A demo takes at most one argument, a number (N threads, P percent...).
struct Param {
  std::string usage;  // "[N]"; empty: the demo takes no argument
  std::string what;
  double fallback = 0, low = 0, high = 0;
  bool integer = false;
};

using Evaluate = std::function<Verdict(Session&, double param)>;

struct Demo {
  std::string name;
  Param param;
  std::string what;
  std::string lesson;
  Evaluate evaluate;
};

// The demo's parameter from its command-line words, checked before anything
// runs.  Throws a usage error.
double parse_param(const Demo& d, const std::vector<std::string>& words);

const std::vector<Demo>& demos();
// Throws a usage error naming the demos when there is no such demo.
const Demo& find_demo(const std::string& name);

}  // namespace gilstat::cli::demo

// `gilstat demo hog` (a native call keeping the GIL 200 ms while two threads
// wait: its long-hold stack, launched and attached) and the held-time
// profile's checks of `spin`.
#pragma once

#include "cli/demo_session.hpp"
#include "cli/demo_truth.hpp"

namespace gilstat::cli::demo {

Verdict hog_demo(Session& s, double param);

// `spin`: the spinners' group in the held-time profile holds exactly their
// held time, and their loop function leads it with (nearly) all of it.
void spin_profile_checks(const Run& run, Verdict& v);

}  // namespace gilstat::cli::demo

// poll(2) with a timeout finer than a millisecond: the capture loops wait
// between drains for as little as a tenth of a millisecond when a thread
// fills its ring fast (proto::Capture::pause()).
#pragma once

#include <poll.h>

#include <chrono>
#include <cstddef>

namespace gilstat {

// Waits until one of fds is ready or `timeout` has passed (0: just look);
// returns what poll(2) returns (-1 with errno EINTR on a signal).
int poll_for(struct pollfd* fds, size_t n, std::chrono::microseconds timeout);

// Sleeps for `timeout` (no file to watch).
void pause_for(std::chrono::microseconds timeout);

// The thread that drains the probe's rings asks for nice -10, for itself
// only (never the target, which must be started before this is called):
// threads cycling the GIL keep both cores busy, and a drain that waits its
// turn behind them for tens of milliseconds finds full rings.  It uses the
// same CPU either way (a few % of a core), only sooner.  Without the right
// to (not root), it stays as it is.
void prefer_draining_thread();

}  // namespace gilstat

#include "report/stuck_hint.hpp"

#include <fmt/format.h>

#include "report/render_text.hpp"
#include "report/utf8.hpp"

namespace gilstat::report {

std::optional<std::string> stuck_hint(const Report& r, const GilReport& g) {
  if (g.holder_tid == 0 || g.waiting_now == 0 || !(g.holder_for_ns > kStuckHoldNs))
    return std::nullopt;
  std::string name = fmt::format("native-{}", g.holder_tid);
  for (const ThreadReport& t : r.threads)
    if (t.tid == g.holder_tid && t.gil == g.id && !t.name.empty()) name = printable(t.name);
  return fmt::format(
      "GIL {} held by {} (tid {}) for {}{} with no release while {} {} for it: "
      "see what every thread is doing with `gilstat dump --pid {}`",
      g.id, name, g.holder_tid, format_duration(saturating_ns(g.holder_for_ns)),
      g.holder_since_attach ? " (since before attach)" : "", g.waiting_now,
      g.waiting_now == 1 ? "thread waits" : "threads wait", r.host_pid ? r.host_pid : r.pid);
}

}  // namespace gilstat::report

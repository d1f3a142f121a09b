#include "cli/top_modules.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>

#include "report/fit_name.hpp"
#include "report/modules.hpp"
#include "report/utf8.hpp"

namespace gilstat::cli {
namespace {

struct ModuleDelta {
  std::string name;
  uint64_t releases = 0, callbacks = 0;
  double released_ns = 0, busy_ns = 0;
};

}  // namespace

std::vector<std::string> top_module_lines(const report::Report& prev, const report::Report& now,
                                          double interval_s, size_t max_rows) {
  std::map<std::string, const report::ModuleReport*> before;
  for (const report::ModuleReport& m : prev.modules.rows) before[m.path] = &m;
  std::vector<ModuleDelta> deltas;
  for (const report::ModuleReport& m : now.modules.rows) {
    ModuleDelta d{m.name, m.releases, m.callbacks, m.released_ns, m.busy_ns()};
    // Counters only grow within a session; a smaller one is a new session.
    if (auto it = before.find(m.path); it != before.end() && it->second->releases <= m.releases &&
                                       it->second->callbacks <= m.callbacks) {
      d.releases -= it->second->releases;
      d.callbacks -= it->second->callbacks;
      d.released_ns = std::max(0.0, d.released_ns - it->second->released_ns);
      d.busy_ns = std::max(0.0, d.busy_ns - it->second->busy_ns());
    }
    if (d.releases + d.callbacks > 0) deltas.push_back(std::move(d));
  }
  std::vector<std::string> lines;
  if (deltas.empty() || max_rows == 0) return lines;
  std::stable_sort(deltas.begin(), deltas.end(), [](const ModuleDelta& a, const ModuleDelta& b) {
    return a.busy_ns > b.busy_ns;
  });
  const double s = interval_s > 0 ? interval_s : 1;
  // RELEASED s/s: seconds released per second, summed over the module's
  // threads (2.0: two threads spent the whole interval in its native code).
  lines.push_back(fmt::format("{:<28} {:>10} {:>12} {:>11}", "MODULE", "RELEASES/s", "RELEASED s/s",
                              "CALLBACKS/s"));
  for (size_t i = 0; i < std::min(max_rows, deltas.size()); ++i) {
    const ModuleDelta& d = deltas[i];
    lines.push_back(
        fmt::format("{} {:>10.0f} {:>12.2f} {:>11.0f}",
                    report::pad(report::fit_name(report::printable(report::module_label(d.name)), 28), 28, false),
                    d.releases / s, d.released_ns / (s * 1e9), d.callbacks / s));
  }
  return lines;
}

}  // namespace gilstat::cli

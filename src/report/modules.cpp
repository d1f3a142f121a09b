#include "report/modules.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <iterator>
#include <map>
#include <string_view>
#include <utility>

#include "gilstat/protocol.hpp"
#include "report/fit_name.hpp"
#include "report/render_json.hpp"
#include "report/render_text.hpp"
#include "report/report.hpp"
#include "report/utf8.hpp"

namespace gilstat::report {
namespace {

std::string state_name(uint32_t s) {
  switch (static_cast<proto::ModuleState>(s)) {
    case proto::ModuleState::Hooked:
      return "loaded";
    case proto::ModuleState::Unloaded:
      return "unloaded";
    case proto::ModuleState::Restored:
      return "restored";
    default:
      return "unknown";
  }
}

std::string file_name(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string dur(double ns) { return ns > 0 ? format_duration(saturating_ns(ns)) : "-"; }

std::string holds_text(uint64_t n) { return fmt::format("{} long hold{}", n, n == 1 ? "" : "s"); }

// Where the long holds ended, when the recording has any (GIL hogs).
void render_long_holds(const ModuleTable& t, std::ostream& out) {
  std::vector<const ModuleReport*> with;
  for (const ModuleReport& m : t.rows)
    if (m.long_holds) with.push_back(&m);
  if (with.empty() && t.interpreter_long_holds == 0) return;
  std::stable_sort(with.begin(), with.end(), [](const ModuleReport* a, const ModuleReport* b) {
    return a->long_held_ns > b->long_held_ns;
  });
  out << "  long holds (GIL hogs) by the module they ended in (its code on the hold's last "
         "stack):\n";
  for (const ModuleReport* m : with)
    out << fmt::format("    {} {:>16} {:>10}\n", pad(printable(m->name), 44, false),
                       holds_text(m->long_holds), dur(m->long_held_ns));
  if (t.interpreter_long_holds)
    out << fmt::format("    {} {:>16} {:>10}\n",
                       pad("the interpreter itself (no hooked module)", 44, false),
                       holds_text(t.interpreter_long_holds), dur(t.interpreter_long_held_ns));
}

}  // namespace

std::string module_label(const std::string& file_name) {
  // PEP 3149 tags: ".cpython-311-x86_64-linux-gnu.so", ".cpython-313t-...",
  // ".abi3.so", and a bare ".so" after a dotted tag.
  const size_t dot = file_name.find('.');
  if (dot == 0 || dot == std::string::npos || !file_name.ends_with(".so")) return file_name;
  const std::string_view tag = std::string_view(file_name).substr(dot + 1);
  if (tag.starts_with("cpython-") || tag == "abi3.so") return file_name.substr(0, dot);
  return file_name;
}

std::vector<ModuleReport> module_rows(std::span<const ModuleCounts> counts, double ns_per_tick,
                                      double duration_s) {
  std::vector<ModuleReport> rows;
  for (const ModuleCounts& c : counts) {
    if (rows.size() == kMaxModuleRows) break;
    ModuleReport m;
    m.path = c.path;
    m.name = file_name(c.path);
    m.state = state_name(c.state);
    m.releases = c.releases;
    m.restores = c.restores;
    m.released_ns = static_cast<double>(c.released) * ns_per_tick;
    m.restore_wait_ns = static_cast<double>(c.restore_wait) * ns_per_tick;
    m.callbacks = c.ensures;
    m.callback_releases = c.gil_releases;
    m.callback_wait_ns = static_cast<double>(c.ensure_wait) * ns_per_tick;
    m.callback_held_ns = static_cast<double>(c.callback_held) * ns_per_tick;
    m.callbacks_per_s = duration_s > 0 ? static_cast<double>(c.ensures) / duration_s : 0;
    rows.push_back(std::move(m));
  }
  std::stable_sort(rows.begin(), rows.end(), [](const ModuleReport& a, const ModuleReport& b) {
    return a.busy_ns() > b.busy_ns();
  });
  return rows;
}

void charge_long_holds(ModuleTable& t, const HogsReport& hogs) {
  std::map<std::string, ModuleReport*> by_file;
  for (ModuleReport& m : t.rows) {
    m.long_holds = 0;
    m.long_held_ns = 0;
    by_file.emplace(m.name, &m);
  }
  t.interpreter_long_holds = 0;
  t.interpreter_long_held_ns = 0;
  for (const HogEnd& e : hogs.ends) {
    ModuleReport* in = nullptr;
    for (size_t i = 0; i < e.objects.size() && !in; ++i)
      if (auto it = by_file.find(e.objects[i]); it != by_file.end()) in = it->second;
    if (in) {
      in->long_holds += e.holds;
      in->long_held_ns += e.held_ns;
    } else {
      t.interpreter_long_holds += e.holds;
      t.interpreter_long_held_ns += e.held_ns;
    }
  }
}

void attach_modules(Report& r, std::span<const ModuleCounts> counts, uint64_t not_hooked) {
  ModuleTable& t = r.modules;
  t.present = true;
  t.not_hooked = not_hooked;
  t.rows = module_rows(counts, r.ns_per_tick, r.duration_s);
  charge_long_holds(t, r.hogs);
  uint64_t acquisitions = 0;
  for (const GilReport& g : r.gils) acquisitions += g.acquisitions;
  // SaveThread on a free-threaded build without its GIL only detaches.
  t.gil_disabled = r.free_threaded && acquisitions == 0;
}

void attach_hogs(Report& r, HogsReport hogs) {
  r.hogs = std::move(hogs);
  if (r.modules.present) charge_long_holds(r.modules, r.hogs);
}

void render_modules_text(const ModuleTable& t, std::ostream& out, size_t max_rows) {
  if (!t.present) return;
  out << "\nGIL by module (C API calls through each object's GOT; the interpreter's own — "
         "builtins, the eval loop — are in the totals above only)\n";
  if (t.gil_disabled)
    out << "  the GIL was disabled (free-threaded build): these calls detached thread states, "
           "they released no GIL\n";
  std::vector<const ModuleReport*> busy;  // hooked objects that made no call are JSON-only
  for (const ModuleReport& m : t.rows)
    if (m.releases + m.restores + m.callbacks + m.callback_releases) busy.push_back(&m);
  if (busy.empty()) {
    out << "  no extension module released the GIL or called back into Python\n";
  } else {
    out << fmt::format("  {:<28} {:>9} {:>10} {:>10} {:>9} {:>8} {:>10} {:>10}\n", "module",
                       "releases", "released", "wait back", "callbacks", "/s", "cb wait",
                       "cb held");
    const size_t n = max_rows == 0 ? busy.size() : std::min(max_rows, busy.size());
    for (size_t i = 0; i < n; ++i) {
      const ModuleReport& m = *busy[i];
      std::string name = printable(module_label(m.name));
      if (m.state == "unloaded") name += " (unloaded)";
      out << fmt::format("  {} {:>9} {:>10} {:>10} {:>9} {:>8.0f} {:>10} {:>10}\n",
                         pad(name, 28, false), format_count(m.releases), dur(m.released_ns),
                         dur(m.restore_wait_ns), format_count(m.callbacks), m.callbacks_per_s,
                         dur(m.callback_wait_ns), dur(m.callback_held_ns));
    }
    if (n < busy.size()) out << fmt::format("  … {} more modules\n", busy.size() - n);
  }
  render_long_holds(t, out);
  if (t.not_hooked)
    out << fmt::format("  {} objects were not hooked: the probe's table of {} was full\n",
                       t.not_hooked, proto::kMaxModules);
}

std::string modules_json(const ModuleTable& t) {
  if (!t.present) return "null";
  std::string s =
      fmt::format(R"({{"gil_disabled": {}, "not_hooked": {}, "interpreter_long_holds": {}, )"
                  R"("interpreter_long_held_s": {}, "rows": [)",
                  t.gil_disabled, t.not_hooked, t.interpreter_long_holds,
                  json_number(t.interpreter_long_held_ns / 1e9));
  auto it = std::back_inserter(s);
  for (size_t i = 0; i < t.rows.size(); ++i) {
    const ModuleReport& m = t.rows[i];
    fmt::format_to(it, R"({}{{"name": {}, "path": {}, "state": "{}", "releases": {}, )",
                   i ? ", " : "", json_string(m.name), json_string(m.path), m.state, m.releases);
    fmt::format_to(it, R"("restores": {}, "released_s": {}, "restore_wait_s": {}, )", m.restores,
                   json_number(m.released_ns / 1e9), json_number(m.restore_wait_ns / 1e9));
    fmt::format_to(it, R"("callbacks": {}, "callback_releases": {}, "callbacks_per_s": {}, )",
                   m.callbacks, m.callback_releases, json_number(m.callbacks_per_s));
    fmt::format_to(it, R"("callback_wait_s": {}, "callback_held_s": {}, )",
                   json_number(m.callback_wait_ns / 1e9), json_number(m.callback_held_ns / 1e9));
    fmt::format_to(it, R"("long_holds": {}, "long_held_s": {}}})", m.long_holds,
                   json_number(m.long_held_ns / 1e9));
  }
  s += "]}";
  return s;
}

}  // namespace gilstat::report

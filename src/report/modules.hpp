// Per-module GIL accounting (`GIL by module`): what each loaded object did
// with CPython's thread-state calls through its own GOT, as the probe
// counted them (protocol.hpp, ModuleSlot).  Calls made inside the
// interpreter object (builtins, libpython, the eval loop) reach no module's
// GOT: they are the interpreter's, in the GIL and thread totals only.
#pragma once

#include <cstdint>
#include <ostream>
#include <span>
#include <string>
#include <vector>

namespace gilstat::report {

// One object's counters as the probe kept them: durations in raw clock
// units.  Also the recording's Module record.
struct ModuleCounts {
  std::string path;
  uint32_t state = 0;          // proto::ModuleState
  uint64_t releases = 0;       // PyEval_SaveThread calls
  uint64_t released = 0;       // SaveThread's return .. RestoreThread's entry
  uint64_t restores = 0;       // PyEval_RestoreThread calls
  uint64_t restore_wait = 0;   // inside RestoreThread (the wait to get the GIL back)
  uint64_t ensures = 0;        // PyGILState_Ensure calls: callbacks
  uint64_t ensure_wait = 0;    // inside PyGILState_Ensure
  uint64_t gil_releases = 0;   // PyGILState_Release calls
  uint64_t callback_held = 0;  // outermost Ensure's return .. its Release
  bool operator==(const ModuleCounts&) const = default;
};

struct ModuleReport {
  std::string name;   // the file name
  std::string path;   // as the loader knows it
  std::string state;  // "loaded", "unloaded", "restored"
  uint64_t releases = 0;
  uint64_t restores = 0;
  double released_ns = 0;
  double restore_wait_ns = 0;
  uint64_t callbacks = 0;
  uint64_t callback_releases = 0;
  double callback_wait_ns = 0;
  double callback_held_ns = 0;
  double callbacks_per_s = 0;  // over the report's window
  // Long holds (hogs.hpp) that ended inside this module's code: its frame
  // was the innermost one of a hooked module on the hold's last stack.
  uint64_t long_holds = 0;
  double long_held_ns = 0;
  // What ranks it in the table and in `top`: released + waits + callback holds.
  double busy_ns() const {
    return released_ns + restore_wait_ns + callback_wait_ns + callback_held_ns;
  }
};

struct ModuleTable {
  bool present = false;       // the probe kept a table (protocol 4+, or a recording with one)
  bool gil_disabled = false;  // free-threaded, GIL disabled all along: these are not GIL releases
  uint64_t not_hooked = 0;    // objects left out: the probe's table was full
  std::vector<ModuleReport> rows;  // busiest first; every hooked object
  // Long holds whose last stack had no frame of a hooked module: the
  // interpreter's own code (or an object that makes no C API call).
  uint64_t interpreter_long_holds = 0;
  double interpreter_long_held_ns = 0;
};

// Rows from the probe's counters, busiest first.  Bounded: at most
// kMaxModuleRows rows are kept.
inline constexpr size_t kMaxModuleRows = 4096;
std::vector<ModuleReport> module_rows(std::span<const ModuleCounts> counts, double ns_per_tick,
                                      double duration_s);

struct Report;
struct HogsReport;
// Charges each long hold of `hogs` to the module it ended in (the innermost
// native frame of its last stack whose object is a row's file), else to the
// interpreter.  Replaces what an earlier call charged.
void charge_long_holds(ModuleTable& t, const HogsReport& hogs);
// Fills r.modules from the probe's table (r's clock, window, GILs and long
// holds set).
void attach_modules(Report& r, std::span<const ModuleCounts> counts, uint64_t not_hooked);
// Sets r.hogs, and charges them to r's module table when it has one: the
// long holds and the table may be attached in either order.
void attach_hogs(Report& r, HogsReport hogs);

// A module's name as a user imports it: an extension's file name without
// its platform tag and suffix ("_hashlib.cpython-311-x86_64-linux-gnu.so" ->
// "_hashlib", "_demo.abi3.so" -> "_demo"); other objects ("libfoo.so.1")
// keep their file name.  For tables; JSON keeps the file name.
std::string module_label(const std::string& file_name);

// The "GIL by module" section of the text report (nothing when there is no
// table).  max_rows 0: every row.
void render_modules_text(const ModuleTable& t, std::ostream& out, size_t max_rows);
// The JSON value of the report's `modules` field.
std::string modules_json(const ModuleTable& t);

}  // namespace gilstat::report

// gilstat dump --pid PID [--json]
//
// A one-shot snapshot of a CPython process read from outside: per thread its
// tid, Python name, GIL state and Python stack; per GIL its holder and
// waiters.  Memory and /proc reads only: the target is not stopped, nothing
// is injected, no GIL is taken, so it works on a process whose GIL is never
// released, with or without a probe loaded.  docs/dump.md documents the
// output.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <iostream>
#include <memory>

#include "attach/preflight.hpp"
#include "attach/remote_memory.hpp"
#include "cli/commands.hpp"
#include "common/clock.hpp"
#include "common/error.hpp"
#include "common/procfs.hpp"
#include "pyruntime/runtime_reader.hpp"
#include "pyruntime/thread_gil_state.hpp"
#include "report/render_json.hpp"

namespace gilstat::cli {
namespace {

using pyruntime::GilRole;

struct DumpOptions {
  int pid = 0;
  bool json = false;
};

struct DumpThread {
  pid_t tid = 0;
  const pyruntime::PyThread* python = nullptr;  // nullptr: no Python thread state
  pyruntime::ThreadGilState gil;
  std::string comm;  // the kernel's thread name (the target can write it)
};

struct Dump {
  attach::PreflightResult target;
  pyruntime::PySnapshot snapshot;
  std::vector<DumpThread> threads;
  double read_ms = 0;
};

// Python threads first (in the interpreter's order), then the others by tid.
Dump take_dump(pid_t pid) {
  Dump d;
  // Reading memory needs what ptrace needs; another tracer does not stop a read.
  d.target = attach::preflight(pid, /*refuse_traced=*/false);
  const uint64_t started = monotonic_ns();
  attach::LiveRemoteMemory memory(pid);
  d.snapshot = pyruntime::read_runtime(memory, pid, d.target.py_runtime, d.target.version_hex);
  std::vector<pid_t> tids = procfs::task_ids(pid);
  if (tids.empty())
    throw Error(fmt::format("process {} is not running", pid), "it exited while gilstat read it",
                kExitRuntime);
  std::vector<pid_t> order;
  for (const auto& t : d.snapshot.threads)
    if (t.tid > 0 && std::find(tids.begin(), tids.end(), t.tid) != tids.end())
      order.push_back(t.tid);
  std::sort(tids.begin(), tids.end());
  for (pid_t tid : tids)
    if (std::find(order.begin(), order.end(), tid) == order.end()) order.push_back(tid);
  const auto states = pyruntime::gil_states(pid, order, d.snapshot);
  d.read_ms = (monotonic_ns() - started) / 1e6;
  for (size_t i = 0; i < order.size(); ++i) {
    DumpThread t;
    t.tid = order[i];
    t.gil = states[i];
    for (const auto& py : d.snapshot.threads)
      if (py.tid == t.tid) t.python = &py;
    auto comm = procfs::read(pid, fmt::format("task/{}/comm", t.tid));
    if (comm) t.comm = comm->substr(0, comm->find('\n')).substr(0, 64);
    d.threads.push_back(std::move(t));
  }
  return d;
}

std::string thread_label(const DumpThread& t) {
  if (t.python && !t.python->name.empty()) return t.python->name;
  return fmt::format("native-{}", t.tid);
}

std::vector<const DumpThread*> with_role(const Dump& d, size_t gil, GilRole role) {
  std::vector<const DumpThread*> out;
  for (const DumpThread& t : d.threads)
    if (t.gil.gil == gil && t.gil.role == role) out.push_back(&t);
  return out;
}

std::string gil_line(const Dump& d, size_t i) {
  const pyruntime::PyGil& g = d.snapshot.gils[i];
  std::string ids;
  for (int64_t id : g.interp_ids) ids += (ids.empty() ? "" : ",") + std::to_string(id);
  std::string state;
  if (g.enabled && *g.enabled == 0) {
    state = "disabled (free-threaded)";
  } else if (g.locked != 1) {
    state = g.locked == 0 ? "free" : "not created";
  } else {
    auto holders = with_role(d, i, GilRole::kHolds);
    state = holders.empty()
                ? "held by a thread state not found in any thread"
                : fmt::format("held by {} (tid {})", thread_label(*holders[0]), holders[0]->tid);
  }
  std::string waiters;
  for (const DumpThread* w : with_role(d, i, GilRole::kWaits))
    waiters += fmt::format("{}{} (tid {})", waiters.empty() ? "" : ", ", thread_label(*w), w->tid);
  return fmt::format("GIL {} (interpreter {}): {}; waiting: {}; switch_number {}",
                     attach::to_string(g.address), ids, state, waiters.empty() ? "none" : waiters,
                     g.switch_number);
}

void print_text(const Dump& d) {
  size_t python = 0;
  for (const auto& t : d.threads) python += t.python != nullptr;
  std::cout << fmt::format(
      "gilstat dump: pid {}, CPython {}{}, {} threads ({} Python), read in {:.1f} ms "
      "without stopping the target\n",
      d.target.pid, d.target.version, d.snapshot.free_threaded ? " free-threaded" : "",
      d.threads.size(), python, d.read_ms);
  for (size_t i = 0; i < d.snapshot.gils.size(); ++i) std::cout << gil_line(d, i) << "\n";
  for (const DumpThread& t : d.threads) {
    std::string role = pyruntime::gil_role_name(t.gil.role);
    if (t.gil.role == GilRole::kHolds) role = "holds the GIL";
    if (t.gil.role == GilRole::kWaits) role = "waits for the GIL";
    std::cout << fmt::format("\nThread {} \"{}\"{}: {}{}\n", t.tid, thread_label(t),
                             t.python ? "" : " (no Python thread state)", role,
                             t.gil.syscall.empty() ? "" : " [" + t.gil.syscall + "]");
    if (!t.python) continue;
    for (const auto& f : t.python->stack)
      std::cout << fmt::format("    {} ({}:{})\n", f.function, f.file,
                               f.line ? std::to_string(f.line) : "?");
    if (t.python->stack_truncated) std::cout << "    … deeper frames not shown\n";
    if (!t.python->stack_error.empty())
      std::cout << "    (stack incomplete: " << t.python->stack_error << ")\n";
  }
  for (const auto& p : d.snapshot.problems) std::cout << "note: " << p << "\n";
}

std::string jstr(std::string_view s) { return report::json_string(s); }

void print_json(const Dump& d) {
  fmt::memory_buffer b;
  auto out = std::back_inserter(b);
  fmt::format_to(out,
                 "{{\"pid\": {}, \"python_version\": {}, \"free_threaded\": {}, "
                 "\"stopped\": false, \"read_ms\": {:.3f},\n \"gils\": [",
                 d.target.pid, jstr(d.target.version), d.snapshot.free_threaded, d.read_ms);
  for (size_t i = 0; i < d.snapshot.gils.size(); ++i) {
    const auto& g = d.snapshot.gils[i];
    auto holders = with_role(d, i, GilRole::kHolds);
    std::string waiters;
    for (const DumpThread* w : with_role(d, i, GilRole::kWaits))
      waiters += (waiters.empty() ? "" : ", ") + std::to_string(w->tid);
    std::string ids;
    for (int64_t id : g.interp_ids) ids += (ids.empty() ? "" : ", ") + std::to_string(id);
    fmt::format_to(out,
                   "{}\n  {{\"index\": {}, \"address\": {}, \"interpreters\": [{}], "
                   "\"locked\": {}, \"enabled\": {}, \"switch_number\": {}, "
                   "\"holder_tid\": {}, \"waiter_tids\": [{}]}}",
                   i ? "," : "", i, jstr(attach::to_string(g.address)), ids, g.locked == 1,
                   g.enabled ? std::to_string(*g.enabled) : "null", g.switch_number,
                   holders.empty() ? "null" : std::to_string(holders[0]->tid), waiters);
  }
  fmt::format_to(out, "],\n \"threads\": [");
  for (size_t i = 0; i < d.threads.size(); ++i) {
    const DumpThread& t = d.threads[i];
    const auto* py = t.python;
    fmt::format_to(out,
                   "{}\n  {{\"tid\": {}, \"name\": {}, \"name_source\": {}, \"comm\": {}, "
                   "\"python\": {}, \"interpreter\": {}, \"gil_state\": {}, \"gil\": {}, "
                   "\"syscall\": {}, \"python_stack\": [",
                   i ? "," : "", t.tid, py && !py->name.empty() ? jstr(py->name) : "null",
                   py && !py->name_source.empty() ? jstr(py->name_source) : "null", jstr(t.comm),
                   py != nullptr, py ? std::to_string(py->interp_id) : "null",
                   jstr(pyruntime::gil_role_name(t.gil.role)),
                   t.gil.gil ? std::to_string(*t.gil.gil) : "null",
                   t.gil.syscall.empty() ? "null" : jstr(t.gil.syscall));
    if (py) {
      for (size_t k = 0; k < py->stack.size(); ++k) {
        const auto& f = py->stack[k];
        fmt::format_to(out, "{}{{\"function\": {}, \"file\": {}, \"line\": {}}}", k ? ", " : "",
                       jstr(f.function), jstr(f.file), f.line ? std::to_string(f.line) : "null");
      }
    }
    fmt::format_to(out, "], \"stack_truncated\": {}, \"stack_error\": {}}}",
                   py && py->stack_truncated,
                   py && !py->stack_error.empty() ? jstr(py->stack_error) : "null");
  }
  fmt::format_to(out, "],\n \"problems\": [");
  for (size_t i = 0; i < d.snapshot.problems.size(); ++i)
    fmt::format_to(out, "{}{}", i ? ", " : "", jstr(d.snapshot.problems[i]));
  fmt::format_to(out, "]}}\n");
  std::cout << std::string_view(b.data(), b.size());
}

int dump(const DumpOptions& opts) {
  const Dump d = take_dump(opts.pid);
  if (opts.json)
    print_json(d);
  else
    print_text(d);
  return kExitOk;
}

}  // namespace

void add_dump_command(CLI::App& app, Action& action) {
  auto opts = std::make_shared<DumpOptions>();
  CLI::App* cmd = app.add_subcommand(
      "dump", "Snapshot a CPython process from outside: threads, GIL state, Python stacks");
  cmd->add_option("-p,--pid", opts->pid, "CPython process")->required();
  cmd->add_flag("--json", opts->json, "Machine-readable output (docs/dump.md)");
  cmd->callback([opts, &action] { action = [opts] { return dump(*opts); }; });
}

}  // namespace gilstat::cli

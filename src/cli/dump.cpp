// gilstat dump --pid PID [--json]
//
// A one-shot snapshot of a CPython process read from outside: per thread its
// tid, Python name, GIL state, Python stack and native stack; per GIL its
// holder and waiters.  Every thread is stopped together (PTRACE_SEIZE +
// INTERRUPT: no signal) while its Python and native stacks are read, then
// let go; nothing is injected, no GIL is taken, so it works on a process
// whose GIL is never released, with or without a probe loaded.
// `--no-stop` reads memory only (no native stacks).  docs/dump.md documents
// the output.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <iostream>
#include <map>
#include <memory>

#include "attach/native_stack.hpp"
#include "attach/preflight.hpp"
#include "attach/remote_memory.hpp"
#include "cli/commands.hpp"
#include "cli/dump_locks.hpp"
#include "common/clock.hpp"
#include "common/error.hpp"
#include "common/procfs.hpp"
#include "pyruntime/runtime_reader.hpp"
#include "pyruntime/thread_gil_state.hpp"
#include "report/render_json.hpp"
#include "symbols/symbolizer.hpp"

namespace gilstat::cli {
namespace {

using pyruntime::GilRole;

struct DumpOptions {
  int pid = 0;
  bool json = false;
  bool no_stop = false;
};

// The threads are stopped at most this long waiting for each to stop.
constexpr std::chrono::milliseconds kStopTimeout{250};

struct DumpThread {
  pid_t tid = 0;
  const pyruntime::PyThread* python = nullptr;  // nullptr: no Python thread state
  pyruntime::ThreadGilState gil;
  std::string comm;                           // the kernel's thread name (the target can write it)
  std::optional<attach::NativeStack> native;  // absent with --no-stop
  std::vector<std::string> native_frames;     // symbolised, innermost first
  std::optional<pyruntime::SyscallState> stopped_syscall;  // absent with --no-stop
  bool frames_named = false;  // a symbol names one of the innermost frames
};

struct Dump {
  attach::PreflightResult target;
  pyruntime::PySnapshot snapshot;
  std::vector<DumpThread> threads;
  double read_ms = 0;
  bool stopped = false;
  double stopped_ms = 0;  // the longest any thread was kept from running
  std::vector<LockWait> locks;
  std::vector<Verdict> verdicts;
};

std::string thread_label(const DumpThread& t);

// The locks the threads sleep on (their system calls as seen while stopped)
// and the verdict on each GIL held while others wait.
void follow_and_judge(Dump& d, const attach::RemoteMemory& memory,
                      const attach::ProcessMaps* maps) {
  std::vector<LockThread> threads;
  for (const DumpThread& t : d.threads) {
    LockThread l{t.tid, thread_label(t), t.gil.role, t.gil.gil, t.native_frames};
    l.frames_named = t.frames_named;
    l.syscall = t.stopped_syscall;
    if (t.python) l.pthread_id = t.python->pthread_id;
    if (t.native && !t.native->frames.empty())
      l.stack_pointer = t.native->frames.front().sp.value();
    threads.push_back(std::move(l));
  }
  const RLockProbe rlocks{cpython::object_layout(d.snapshot.minor, d.snapshot.free_threaded),
                          cpython::rlock_layout(d.snapshot.minor, d.snapshot.free_threaded),
                          d.snapshot.minor, maps};
  d.locks = follow_locks(d.target.pid, memory, threads, rlocks);
  d.verdicts = judge(threads, d.locks);
}

const LockWait* lock_of(const Dump& d, pid_t tid) {
  for (const LockWait& w : d.locks)
    if (w.tid == tid) return &w;
  return nullptr;
}

std::string owner_text(const Dump& d, const LockWait& w) {
  if (!w.owner) {
    if (w.kind == "unknown")
      return d.stopped ? "owner unknown (no symbol names its native frames: the kind of lock "
                         "cannot be told)"
                       : "owner unknown (no native stack with --no-stop: the kind of lock "
                         "cannot be told)";
    return "owner unknown";
  }
  const std::string count = w.owner_count > 1 ? fmt::format(", {} times", w.owner_count) : "";
  for (const DumpThread& t : d.threads)
    if (t.tid == *w.owner)
      return fmt::format("owned by {} (tid {}){}", thread_label(t), t.tid, count);
  return fmt::format("owned by tid {}{}", *w.owner, count);
}

// Python threads first (in the interpreter's order), then the others by tid.
Dump take_dump(pid_t pid, bool stop) {
  Dump d;
  // Reading memory needs what ptrace needs; another tracer does not stop a
  // read, but it does stop a stop (`--no-stop` then).
  d.target = attach::preflight(pid, /*refuse_traced=*/stop);
  const uint64_t started = monotonic_ns();
  attach::LiveRemoteMemory memory(pid);
  std::vector<pid_t> tids = procfs::task_ids(pid);
  if (tids.empty())
    throw Error(fmt::format("process {} is not running", pid), "it exited while gilstat read it",
                kExitRuntime);
  std::sort(tids.begin(), tids.end());
  // Which thread waits for the GIL is read from /proc before the stop too (a
  // waiter between two timed waits is seen waiting then); everything else
  // while every thread stands still, so stacks, system calls and the GIL's
  // holder agree.  System calls are not read after the resume: a thread
  // restarting the call the stop interrupted shows "running" for a moment.
  std::optional<attach::ProcessMaps> maps;
  std::unique_ptr<attach::StackUnwinder> unwinder;
  std::optional<attach::StoppedThreads> stopped;
  std::map<pid_t, attach::NativeStack> natives;
  if (stop) {
    maps = attach::ProcessMaps::read(pid);
    unwinder = std::make_unique<attach::StackUnwinder>(*maps, memory);
    unwinder->prepare();
  }
  pyruntime::PySnapshot before =
      pyruntime::read_runtime(memory, pid, d.target.py_runtime, d.target.version_hex);
  const auto early_states = pyruntime::gil_states(pid, tids, before);
  if (stop) {
    stopped.emplace(pid, tids, kStopTimeout);
    d.stopped = true;
  }
  d.snapshot = stop
                   ? pyruntime::read_runtime(memory, pid, d.target.py_runtime, d.target.version_hex)
                   : std::move(before);
  std::map<pid_t, pyruntime::SyscallState> syscalls;  // read while stopped
  if (stop) {
    for (pid_t tid : tids) {
      natives[tid] = attach::unwind_stopped(*stopped, tid, *unwinder, 128);
      if (!stopped->is_stopped(tid)) continue;
      if (auto sc = pyruntime::read_syscall_stopped(pid, tid)) syscalls[tid] = *sc;
    }
    stopped->resume_all();
    for (pid_t tid : tids) {
      natives[tid].stopped = stopped->stopped_for(tid);
      d.stopped_ms = std::max(d.stopped_ms, natives[tid].stopped.count() / 1e6);
    }
  }
  std::vector<pid_t> order;
  for (const auto& t : d.snapshot.threads)
    if (t.tid > 0 && std::find(tids.begin(), tids.end(), t.tid) != tids.end())
      order.push_back(t.tid);
  for (pid_t tid : tids)
    if (std::find(order.begin(), order.end(), tid) == order.end()) order.push_back(tid);
  // Holding from the snapshot taken while stopped; waiting from the system
  // call seen while stopped or before the stop.
  const auto states = pyruntime::gil_states(pid, order, d.snapshot, syscalls);
  d.read_ms = (monotonic_ns() - started) / 1e6;
  symbols::Symbolizer symbolizer;
  if (maps) symbolizer.use_maps(pid, *maps);
  for (size_t i = 0; i < order.size(); ++i) {
    DumpThread t;
    t.tid = order[i];
    t.gil = states[i];
    if (t.gil.role != GilRole::kHolds)
      for (size_t k = 0; k < tids.size(); ++k)
        if (tids[k] == t.tid && early_states[k].role == GilRole::kWaits) t.gil = early_states[k];
    if (auto sc = syscalls.find(t.tid); sc != syscalls.end()) t.stopped_syscall = sc->second;
    if (auto n = natives.find(t.tid); n != natives.end()) {
      t.native = n->second;
      for (const auto& f : n->second.frames) {
        const symbols::Location loc = symbolizer.locate(pid, f);
        t.frames_named |= t.native_frames.size() < 6 && !loc.function.empty();
        t.native_frames.push_back(loc.to_string());
      }
    }
    for (const auto& py : d.snapshot.threads)
      if (py.tid == t.tid) t.python = &py;
    auto comm = procfs::read(pid, fmt::format("task/{}/comm", t.tid));
    if (comm) t.comm = comm->substr(0, comm->find('\n')).substr(0, 64);
    d.threads.push_back(std::move(t));
  }
  follow_and_judge(d, memory, maps ? &*maps : nullptr);
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

// A thread's native frames (innermost first), when the threads were stopped.
void print_native(const DumpThread& t) {
  if (!t.native) return;
  std::cout << "  native:\n";
  for (const auto& f : t.native_frames) std::cout << "    " << f << "\n";
  if (!t.native->why_incomplete.empty())
    std::cout << "    (native stack incomplete: " << t.native->why_incomplete << ")\n";
}

void print_text(const Dump& d) {
  size_t python = 0;
  for (const auto& t : d.threads) python += t.python != nullptr;
  std::cout << fmt::format(
      "gilstat dump: pid {}, CPython {}{}, {} threads ({} Python), read in {:.1f} ms{}\n",
      d.target.pid, d.target.version, d.snapshot.free_threaded ? " free-threaded" : "",
      d.threads.size(), python, d.read_ms,
      d.stopped ? fmt::format(", threads stopped together for at most {:.1f} ms", d.stopped_ms)
                : " without stopping the target");
  for (size_t i = 0; i < d.snapshot.gils.size(); ++i) std::cout << gil_line(d, i) << "\n";
  for (const Verdict& v : d.verdicts) std::cout << v.text << "\n";
  for (const DumpThread& t : d.threads) {
    std::string role = pyruntime::gil_role_name(t.gil.role);
    if (t.gil.role == GilRole::kHolds) role = "holds the GIL";
    if (t.gil.role == GilRole::kWaits) role = "waits for the GIL";
    std::cout << fmt::format("\nThread {} \"{}\"{}: {}{}\n", t.tid, thread_label(t),
                             t.python ? "" : " (no Python thread state)", role,
                             t.gil.syscall.empty() ? "" : " [" + t.gil.syscall + "]");
    if (const LockWait* w = lock_of(d, t.tid))
      std::cout << fmt::format("  waits for {} 0x{:x}, {}\n",
                               w->kind == "unknown" ? "a lock of unknown kind" : w->kind,
                               w->address, owner_text(d, *w));
    if (t.python) {
      std::cout << "  Python:\n";
      for (const auto& f : t.python->stack)
        std::cout << fmt::format("    {} ({}:{})\n", f.function, f.file,
                                 f.line ? std::to_string(f.line) : "?");
      if (t.python->stack_truncated) std::cout << "    … deeper frames not shown\n";
      if (!t.python->stack_error.empty())
        std::cout << "    (stack incomplete: " << t.python->stack_error << ")\n";
    }
    print_native(t);
  }
  for (const auto& p : d.snapshot.problems) std::cout << "note: " << p << "\n";
}

std::string jstr(std::string_view s) { return report::json_string(s); }

void print_json(const Dump& d) {
  fmt::memory_buffer b;
  auto out = std::back_inserter(b);
  fmt::format_to(out,
                 "{{\"pid\": {}, \"python_version\": {}, \"free_threaded\": {}, "
                 "\"stopped\": {}, \"stopped_ms\": {:.3f}, \"read_ms\": {:.3f},\n \"gils\": [",
                 d.target.pid, jstr(d.target.version), d.snapshot.free_threaded, d.stopped,
                 d.stopped_ms, d.read_ms);
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
    const LockWait* w = lock_of(d, t.tid);
    if (w)
      fmt::format_to(out,
                     "], \"lock\": {{\"address\": \"0x{:x}\", \"kind\": {}, \"owner_tid\": {}, "
                     "\"owner_count\": {}}}",
                     w->address, jstr(w->kind), w->owner ? std::to_string(*w->owner) : "null",
                     w->owner_count ? std::to_string(w->owner_count) : "null");
    else
      fmt::format_to(out, "], \"lock\": null");
    fmt::format_to(out, ", \"stack_truncated\": {}, \"stack_error\": {}, \"native_stack\": ",
                   py && py->stack_truncated,
                   py && !py->stack_error.empty() ? jstr(py->stack_error) : "null");
    if (!t.native) {
      fmt::format_to(out, "null}}");
      continue;
    }
    fmt::format_to(out, "[");
    for (size_t k = 0; k < t.native_frames.size(); ++k)
      fmt::format_to(out, "{}{}", k ? ", " : "", jstr(t.native_frames[k]));
    fmt::format_to(out, "], \"native_incomplete\": {}}}",
                   t.native->why_incomplete.empty() ? "null" : jstr(t.native->why_incomplete));
  }
  fmt::format_to(out, "],\n \"verdicts\": [");
  for (size_t i = 0; i < d.verdicts.size(); ++i) {
    const Verdict& v = d.verdicts[i];
    std::string cycle;
    for (pid_t tid : v.cycle) cycle += (cycle.empty() ? "" : ", ") + std::to_string(tid);
    fmt::format_to(out,
                   "{}{{\"gil\": {}, \"kind\": {}, \"holder_tid\": {}, \"other_tid\": {}, "
                   "\"lock\": {}, \"cycle_tids\": [{}], \"text\": {}}}",
                   i ? ", " : "", v.gil ? std::to_string(*v.gil) : "null", jstr(v.kind),
                   v.holder ? std::to_string(v.holder) : "null",
                   v.other ? std::to_string(v.other) : "null",
                   v.lock ? fmt::format("\"0x{:x}\"", v.lock) : "null", cycle, jstr(v.text));
  }
  fmt::format_to(out, "],\n \"problems\": [");
  for (size_t i = 0; i < d.snapshot.problems.size(); ++i)
    fmt::format_to(out, "{}{}", i ? ", " : "", jstr(d.snapshot.problems[i]));
  fmt::format_to(out, "]}}\n");
  std::cout << std::string_view(b.data(), b.size());
}

int dump(const DumpOptions& opts) {
  const Dump d = take_dump(opts.pid, !opts.no_stop);
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
      "dump",
      "Snapshot a CPython process from outside: threads, GIL state, Python and native stacks");
  cmd->add_option("-p,--pid", opts->pid, "CPython process")->required();
  cmd->add_flag("--json", opts->json, "Machine-readable output (docs/dump.md)");
  cmd->add_flag("--no-stop", opts->no_stop,
                "Read memory only: do not stop the threads (no native stacks)");
  cmd->callback([opts, &action] { action = [opts] { return dump(*opts); }; });
}

}  // namespace gilstat::cli

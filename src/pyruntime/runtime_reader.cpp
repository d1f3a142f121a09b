#include "pyruntime/runtime_reader.hpp"

#include <algorithm>
#include <cstring>
#include <iterator>
#include <memory>
#include <set>
#include <span>

#include "common/error.hpp"
#include "common/procfs.hpp"
#include "gilstat/cpython_layout.hpp"
#include "gilstat/cpython_objects.hpp"
#include "pyruntime/line_table.hpp"
#include "pyruntime/object_reader.hpp"

namespace gilstat::pyruntime {

namespace {

constexpr uint64_t kMaxStructOffset = 1u << 20;

class Walker {
 public:
  Walker(const attach::RemoteMemory& memory, pid_t pid, RemoteAddr runtime, int minor,
         bool free_threaded, const cpython::ObjectLayout& layout)
      : m_(memory),
        pid_(pid),
        runtime_(runtime),
        minor_(minor),
        ft_(free_threaded),
        l_(layout),
        o_(memory, layout, minor) {}

  // One running thread's Python stack (the sampler's read: nothing else is
  // read).  Empty when the thread's innermost frame changed during the read
  // (a call returned, a generator yielded and unlinked its frame): such a
  // stack can be cut short or mixed, and a profile must not count it.
  PyThread stack_of(RemoteAddr tstate) {
    PyThread t;
    t.tstate = tstate;
    const auto before = first_frame(tstate);
    if (before) read_stack_from(*before, &t, /*names=*/false);
    const auto after = first_frame(tstate);
    if (!before || !after || *before != *after) {
      t.stack.clear();
      t.stack_error = "the stack moved while read";
    }
    return t;
  }

  // The tid of a thread state read directly (a thread born since the last
  // full read): native_thread_id, or before 3.11 the tid in glibc's struct
  // pthread at the offset the last full read confirmed.
  std::optional<pid_t> tid_of(RemoteAddr ts) {
    std::optional<uint64_t> tid;
    if (l_.tstate_native_thread_id) {
      tid = o_.u64(ts + l_.tstate_native_thread_id);
    } else if (pthread_tid_offset_) {
      auto pthread = o_.u64(ts + l_.tstate_thread_id);
      if (!pthread || !*pthread) return std::nullopt;
      auto v = m_.read_value<int32_t>(RemoteAddr(*pthread + pthread_tid_offset_));
      if (v && *v > 0) tid = static_cast<uint64_t>(*v);
    }
    if (!tid || *tid == 0 || *tid >= (1u << 22)) return std::nullopt;  // above any pid_max
    return static_cast<pid_t>(*tid);
  }

  // A GIL's `locked` and `last_holder`, nullopt when unreadable.
  std::optional<std::pair<int32_t, RemoteAddr>> gil_holder(RemoteAddr gil) {
    const cpython::GilFields& f = cpython::gil_fields(ft_);
    FieldBlock fields;
    if (!fields.read(m_, gil, std::min(f.locked, f.last_holder),
                     std::max(f.locked + 4, f.last_holder + 8)))
      return std::nullopt;
    auto locked = fields.get<int32_t>(f.locked);
    auto holder = fields.get<uint64_t>(f.last_holder);
    if (!locked || !holder) return std::nullopt;
    return std::make_pair(*locked, RemoteAddr(*holder));
  }

  void run(PySnapshot* snap) {
    snap_ = snap;
    if (minor_ >= 13 && !load_debug_offsets()) return;
    auto head = o_.ptr(runtime_ + l_.runtime_interpreters_head);
    if (!head) return problem("cannot read the interpreter list");
    std::set<uint64_t> seen;
    for (RemoteAddr interp = *head; !interp.is_null();) {
      if (seen.size() >= kMaxInterpreters) return problem("more than 64 interpreters: cut");
      if (!seen.insert(interp.value()).second) return problem("interpreter list loops");
      read_interpreter(interp, seen.size() - 1);
      auto next = o_.ptr(interp + l_.interp_next);
      if (!next) return problem("interpreter list unreadable (changed while read)");
      interp = *next;
    }
    if (seen.empty()) problem("no interpreter: the runtime is not initialised yet, or finalising");
    assign_tids();
    for (PyThread& t : snap_->threads)
      if (t.name.empty() && t.tid == pid_) t.name = "MainThread", t.name_source = "main";
  }

 private:
  void problem(std::string text) { snap_->problems.push_back(std::move(text)); }

  // 3.13+: where the GIL pointer sits in an interpreter, from the target's
  // own _Py_DebugOffsets (it is the one value our tables do not carry).
  bool load_debug_offsets() {
    cpython::DebugOffsetsLayout d{};
    if (!cpython::debug_offsets_layout(minor_, &d)) return false;
    auto value = o_.u64(runtime_ + d.interp_ceval_gil);
    if (!value || *value > kMaxStructOffset) {
      problem("_Py_DebugOffsets unreadable");
      return false;
    }
    ceval_gil_ = *value;
    return true;
  }

  void read_interpreter(RemoteAddr interp, size_t index) {
    auto id = m_.read_value<int64_t>(interp + cpython::interp_id_offset(minor_));
    const int64_t interp_id = id ? *id : static_cast<int64_t>(index);
    read_gil(interp, interp_id);
    auto head = o_.ptr(interp + l_.interp_threads_head);
    if (!head)
      return problem("thread list of interpreter " + std::to_string(interp_id) + " unreadable");
    std::set<uint64_t> seen;
    for (RemoteAddr ts = *head; !ts.is_null();) {
      if (snap_->threads.size() >= kMaxThreads) return problem("more than 4096 threads: cut");
      if (!seen.insert(ts.value()).second) return problem("thread list loops");
      PyThread t;
      t.tstate = ts;
      t.interp_id = interp_id;
      auto pthread_id = o_.u64(ts + l_.tstate_thread_id);
      if (!pthread_id) return problem("thread state unreadable (changed while read)");
      t.pthread_id = *pthread_id;
      if (l_.tstate_native_thread_id) {
        auto tid = o_.u64(ts + l_.tstate_native_thread_id);
        if (tid && *tid > 0 && *tid < (1u << 30)) t.tid = static_cast<pid_t>(*tid);
      }
      read_stack(&t);
      snap_->threads.push_back(std::move(t));
      auto next = o_.ptr(ts + l_.tstate_next);
      if (!next) return problem("thread list unreadable (changed while read)");
      ts = *next;
    }
  }

  void read_gil(RemoteAddr interp, int64_t interp_id) {
    RemoteAddr gil;
    if (minor_ <= 11) {
      gil = runtime_ + cpython::runtime_gil_offset(minor_);
    } else {
      const uint64_t at = minor_ == 12 ? cpython::kInterp312.ceval_gil : ceval_gil_;
      auto p = o_.ptr(interp + at);
      if (!p || p->is_null()) return problem("GIL pointer unreadable");
      gil = *p;
    }
    for (PyGil& g : snap_->gils)
      if (g.address == gil) {
        g.interp_ids.push_back(interp_id);
        return;
      }
    const cpython::GilFields& f = cpython::gil_fields(ft_);
    PyGil g;
    g.address = gil;
    g.interp_ids.push_back(interp_id);
    auto locked = m_.read_value<int32_t>(gil + f.locked);
    auto holder = o_.u64(gil + f.last_holder);
    auto switches = o_.u64(gil + f.switch_number);
    if (!locked || !holder || !switches) return problem("GIL at " + to_string(gil) + " unreadable");
    g.locked = *locked;
    g.last_holder = RemoteAddr(*holder);
    g.switch_number = *switches;
    if (ft_) g.enabled = m_.read_value<int32_t>(gil + f.enabled);
    g.cond = gil + f.cond;
    g.cond_size = f.mutex - f.cond;
    g.mutex = gil + f.mutex;
    g.mutex_size = f.switch_cond - f.mutex;
    snap_->gils.push_back(g);
  }

  // The innermost frame of a thread, or nullopt.
  std::optional<RemoteAddr> first_frame(RemoteAddr ts) {
    auto p = o_.ptr(ts + l_.tstate_frame);
    if (!p || p->is_null() || (minor_ != 11 && minor_ != 12)) return p;
    return o_.ptr(*p + l_.cframe_current_frame);  // through _PyCFrame
  }

  // `names`: also the `threading` name, from Thread._bootstrap_inner's
  // frame (a dozen reads more; a sample does not need it).
  void read_stack(PyThread* t, bool names = true) {
    auto frame = first_frame(t->tstate);
    if (!frame) {
      t->stack_error = "frame pointer unreadable";
      return;
    }
    read_stack_from(*frame, t, names);
  }

  void read_stack_from(RemoteAddr innermost, PyThread* t, bool names) {
    std::set<uint64_t> seen;
    for (RemoteAddr f = innermost; !f.is_null();) {
      if (seen.size() >= kMaxFrames) {
        t->stack_truncated = true;
        return;
      }
      if (!seen.insert(f.value()).second) {
        t->stack_error = "frame chain loops (changed while read)";
        return;
      }
      FieldBlock fields;
      if (!read_frame_fields(f, fields)) return (void)fail(t, "frame unreadable");
      if (!read_frame(f, fields, names, t)) return;
      auto back = fields.ptr(l_.frame_back);
      if (!back) {
        t->stack_error = "frame chain unreadable at depth " + std::to_string(seen.size());
        return;
      }
      f = *back;
    }
  }

  // The fields of frame `f` the walk reads (back, code, last instruction,
  // owner), in one read.
  bool read_frame_fields(RemoteAddr f, FieldBlock& fields) {
    const uint32_t lasti_size = minor_ <= 10 ? 4 : 8;
    uint32_t lo = std::min({l_.frame_back, l_.frame_code, l_.frame_lasti});
    uint32_t hi = std::max({l_.frame_back + 8, l_.frame_code + 8, l_.frame_lasti + lasti_size});
    if (minor_ >= 12) lo = std::min(lo, l_.frame_owner), hi = std::max(hi, l_.frame_owner + 1);
    return fields.read(m_, f, lo, hi);
  }

  // Adds frame `f` (when it is Python code) to t; false when the chain
  // cannot go on.
  bool read_frame(RemoteAddr f, const FieldBlock& fields, bool names, PyThread* t) {
    if (minor_ >= 12) {
      auto owner = fields.get<uint8_t>(l_.frame_owner);
      if (!owner) return fail(t, "frame unreadable");
      if (*owner >= cpython::kFirstNonCodeOwner) return true;  // C stack's shim frame
    }
    auto raw = fields.get<uint64_t>(l_.frame_code);
    if (!raw) return fail(t, "frame unreadable");
    uint64_t code_at = *raw;
    if (minor_ >= 14) code_at &= ~cpython::kStackRefTagMask;  // a _PyStackRef
    const CodeInfo* code = code_at && !(code_at & 7) ? o_.code(RemoteAddr(code_at)) : nullptr;
    if (!code) {
      // 3.13+ frames may run something that is not a code object; older
      // ones cannot.
      if (minor_ >= 13 && o_.type_name(RemoteAddr(code_at))) return true;
      return fail(t, "code object unreadable (changed while read)");
    }
    PyFrame pf;
    pf.function = code->function;
    pf.file = code->file;
    pf.line = line_of(fields, RemoteAddr(code_at), *code).value_or(0);
    if (names && t->name.empty() && pf.function.ends_with("_bootstrap_inner") &&
        pf.file.ends_with("threading.py"))
      read_thread_name(f, t);
    t->stack.push_back(std::move(pf));
    return true;
  }

  bool fail(PyThread* t, std::string why) {
    t->stack_error = std::move(why);
    return false;
  }

  std::optional<int> line_of(const FieldBlock& frame, RemoteAddr code_at, const CodeInfo& code) {
    std::span<const std::byte> table(code.line_table);
    if (minor_ <= 10) {
      auto lasti = frame.get<int32_t>(l_.frame_lasti);
      if (!lasti) return std::nullopt;
      if (*lasti < 0) return code.first_line;  // not started yet
      if (minor_ <= 9) return lnotab_line(table, code.first_line, static_cast<uint64_t>(*lasti));
      return linetable310_line(table, code.first_line, uint64_t(*lasti) * 2);
    }
    auto instr = frame.get<uint64_t>(l_.frame_lasti);
    if (!instr) return std::nullopt;
    const RemoteAddr start = code_at + l_.code_code_adaptive;
    if (*instr < start.value()) return code.first_line;  // 3.11/3.12: before the first instruction
    const uint64_t unit = (*instr - start.value()) / 2;
    if (unit >= code.code_units) return std::nullopt;
    return location_table_line(table, code.first_line, unit);
  }

  // Thread._bootstrap_inner(self): self is its first local; its name is
  // self._name.
  void read_thread_name(RemoteAddr f, PyThread* t) {
    auto raw = o_.u64(f + l_.frame_localsplus);
    if (!raw) return;
    uint64_t self = *raw;
    if (minor_ >= 14) self &= ~cpython::kStackRefTagMask;
    if (!self || (self & 7)) return;
    auto name = o_.instance_attribute(RemoteAddr(self), "_name");
    if (!name) return;
    auto text = o_.str(*name, 256);
    if (!text) return;
    t->name = std::move(*text);
    t->name_source = "threading";
  }

  // 3.8-3.10 keep only the pthread_t: glibc's struct pthread holds the tid
  // at a fixed offset, checked against the process's task list.
  void assign_tids() {
    if (l_.tstate_native_thread_id) return;
    const std::vector<pid_t> tasks = procfs::task_ids(pid_);
    const std::set<pid_t> task_set(tasks.begin(), tasks.end());
    auto fits = [&](uint64_t offset) {
      size_t matched = 0;
      for (const PyThread& t : snap_->threads) {
        if (!t.pthread_id) continue;
        auto tid = m_.read_value<int32_t>(RemoteAddr(t.pthread_id + offset));
        if (!tid || !task_set.count(*tid)) return false;
        ++matched;
      }
      return matched > 0;
    };
    uint64_t offset = cpython::kGlibcPthreadTid;
    if (!fits(offset)) {
      // Another glibc: the offset that gives a live tid for every thread.
      offset = 0;
      for (uint64_t o = 0; o < 2048 && !offset; o += 4)
        if (fits(o)) offset = o;
      if (!offset) return problem("thread ids: glibc's struct pthread not understood");
    }
    pthread_tid_offset_ = offset;
    for (PyThread& t : snap_->threads) {
      if (!t.pthread_id) continue;
      auto tid = m_.read_value<int32_t>(RemoteAddr(t.pthread_id + offset));
      if (tid && task_set.count(*tid)) t.tid = *tid;
    }
  }

  const attach::RemoteMemory& m_;
  pid_t pid_;
  RemoteAddr runtime_;
  int minor_;
  bool ft_;
  const cpython::ObjectLayout& l_;
  ObjectReader o_;
  uint64_t ceval_gil_ = 0;
  uint64_t pthread_tid_offset_ = 0;  // confirmed by assign_tids(); 0 unknown
  PySnapshot* snap_ = nullptr;
};

// 3.13+: the field offsets the target's _Py_DebugOffsets states replace
// the measured ones (they follow a patch release that moves a field).
// Every value is bounded; a block that does not read as one keeps the table.
void apply_debug_offsets(const attach::RemoteMemory& memory, RemoteAddr runtime, int minor,
                         cpython::ObjectLayout* l, std::vector<std::string>* problems) {
  const cpython::DebugObjectPositions* p = cpython::debug_object_positions(minor);
  char cookie[sizeof(cpython::kDebugCookie)];
  if (!p || !memory.read(runtime, std::as_writable_bytes(std::span(cookie))) ||
      std::memcmp(cookie, cpython::kDebugCookie, sizeof(cookie)) != 0) {
    problems->push_back("_Py_DebugOffsets not found: measured offsets used");
    return;
  }
  struct Field {
    uint32_t position;
    uint32_t* value;
    uint64_t max;
  };
  constexpr uint64_t kStruct = kMaxStructOffset, kObject = 4096;
  const Field fields[] = {
      {p->runtime_interpreters_head, &l->runtime_interpreters_head, kStruct},
      {p->interp_threads_head, &l->interp_threads_head, kStruct},
      {p->interp_next, &l->interp_next, kStruct},
      {p->tstate_next, &l->tstate_next, kStruct},
      {p->tstate_thread_id, &l->tstate_thread_id, kStruct},
      {p->tstate_native_thread_id, &l->tstate_native_thread_id, kStruct},
      {p->tstate_frame, &l->tstate_frame, kStruct},
      {p->frame_back, &l->frame_back, kObject},
      {p->frame_code, &l->frame_code, kObject},
      {p->frame_lasti, &l->frame_lasti, kObject},
      {p->frame_localsplus, &l->frame_localsplus, kObject},
      {p->frame_owner, &l->frame_owner, kObject},
      {p->code_filename, &l->code_filename, kObject},
      {p->code_name, &l->code_name, kObject},
      {p->code_qualname, &l->code_qualname, kObject},
      {p->code_linetable, &l->code_linetable, kObject},
      {p->code_firstlineno, &l->code_firstlineno, kObject},
      {p->code_code_adaptive, &l->code_code_adaptive, kObject},
      {p->ob_type, &l->ob_type, kObject},
      {p->tp_name, &l->tp_name, kObject},
      {p->tuple_items, &l->tuple_items, kObject},
      {p->unicode_state, &l->unicode_state, kObject},
      {p->unicode_length, &l->unicode_length, kObject},
      {p->unicode_ascii_size, &l->unicode_ascii_size, kObject},
  };
  uint64_t values[std::size(fields)];
  for (size_t i = 0; i < std::size(fields); ++i) {
    auto v = memory.read_value<uint64_t>(runtime + fields[i].position);
    if (!v || *v > fields[i].max) {
      problems->push_back("_Py_DebugOffsets out of bounds: measured offsets used");
      return;
    }
    values[i] = *v;
  }
  for (size_t i = 0; i < std::size(fields); ++i)
    *fields[i].value = static_cast<uint32_t>(values[i]);
}

}  // namespace

// The version, build and object layout of a target (what every read needs).
cpython::ObjectLayout layout_of(const attach::RemoteMemory& memory, RemoteAddr py_runtime,
                                uint32_t version_hex, PySnapshot* snap) {
  snap->minor = static_cast<int>((version_hex >> 16) & 0xff);
  if (snap->minor >= 13) {
    auto ft = memory.read_value<uint64_t>(py_runtime + cpython::kDebugFreeThreadedAt);
    snap->free_threaded = ft && *ft == 1;
  }
  const cpython::ObjectLayout* table = cpython::object_layout(snap->minor, snap->free_threaded);
  if (!table)
    throw Error("no object layout for CPython 3." + std::to_string(snap->minor) +
                    (snap->free_threaded ? " (free-threaded)" : ""),
                "gilstat reads Python stacks of 3.8-3.15 and of free-threaded 3.13",
                kExitNotCPython);
  cpython::ObjectLayout layout = *table;
  if (snap->minor >= 13)
    apply_debug_offsets(memory, py_runtime, snap->minor, &layout, &snap->problems);
  return layout;
}

PySnapshot read_runtime(const attach::RemoteMemory& memory, pid_t pid, RemoteAddr py_runtime,
                        uint32_t version_hex) {
  PySnapshot snap;
  const cpython::ObjectLayout layout = layout_of(memory, py_runtime, version_hex, &snap);
  Walker(memory, pid, py_runtime, snap.minor, snap.free_threaded, layout).run(&snap);
  return snap;
}

struct HolderSampler::Impl {
  const attach::RemoteMemory& memory;
  pid_t pid;
  RemoteAddr py_runtime;
  PySnapshot info;  // minor and build only
  cpython::ObjectLayout layout;
  std::unique_ptr<Walker> walker;
  std::vector<RemoteAddr> gils;
  uint64_t refreshed_ns = 0;
  bool refreshed = false;

  Impl(const attach::RemoteMemory& m, pid_t p, RemoteAddr runtime, uint32_t version_hex)
      : memory(m), pid(p), py_runtime(runtime), layout(layout_of(m, runtime, version_hex, &info)) {}

  // The GILs (and, before 3.11, where glibc keeps a thread's tid), read
  // afresh; a new walker also
  // drops the code objects cached by address (one freed and replaced at the
  // same address is then seen within a refresh).
  void refresh(uint64_t now_ns) {
    walker =
        std::make_unique<Walker>(memory, pid, py_runtime, info.minor, info.free_threaded, layout);
    PySnapshot snap;
    snap.minor = info.minor;
    snap.free_threaded = info.free_threaded;
    walker->run(&snap);
    gils.clear();
    for (const PyGil& g : snap.gils) gils.push_back(g.address);
    refreshed_ns = now_ns;
    refreshed = true;
  }
};

HolderSampler::HolderSampler(const attach::RemoteMemory& memory, pid_t pid, RemoteAddr py_runtime,
                             uint32_t version_hex)
    : impl_(std::make_unique<Impl>(memory, pid, py_runtime, version_hex)) {}

HolderSampler::~HolderSampler() = default;

std::vector<HolderSample> HolderSampler::sample(uint64_t now_ns) {
  Impl& s = *impl_;
  // A process sampled from its start (a launched program) may list no GIL
  // yet: look again soon rather than in a second.
  const uint64_t every = s.gils.empty() ? kRetryNs : kRefreshNs;
  if (!s.refreshed || now_ns - s.refreshed_ns >= every) s.refresh(now_ns);
  std::vector<HolderSample> out;
  for (const RemoteAddr gil : s.gils) {
    auto state = s.walker->gil_holder(gil);
    if (!state || state->first != 1 || state->second.is_null()) continue;
    // Read each time: a thread state freed with its thread is soon reused
    // at the same address by the next one (a thread per request).
    auto tid = s.walker->tid_of(state->second);
    if (!tid) continue;
    PyThread t = s.walker->stack_of(state->second);
    if (t.stack.empty()) continue;  // torn read, or no Python frame
    // The holder may have let go while its frames were read: the stack is
    // kept only when the same thread state still holds the GIL.
    auto after = s.walker->gil_holder(gil);
    if (!after || after->first != 1 || after->second != state->second) continue;
    out.push_back({gil.value(), *tid, std::move(t.stack)});
  }
  return out;
}

std::vector<std::pair<pid_t, std::string>> thread_names(const PySnapshot& snapshot) {
  std::vector<std::pair<pid_t, std::string>> out;
  for (const PyThread& t : snapshot.threads)
    if (t.tid > 0 && !t.name.empty()) out.emplace_back(t.tid, t.name);
  return out;
}

}  // namespace gilstat::pyruntime

// Where the GIL lives in each CPython minor version (x86_64, glibc).
//
// Numbers measured on real interpreters (DWARF, offsetof against each
// version's headers, live memory; docs/gil-internals.md).  Shared by the
// probe (which reads its own process's memory) and the CLI (which reads a
// remote process's memory for attach pre-flight).  Header-only, no syscalls.
#pragma once

#include <cstdint>

namespace gilstat::cpython {

inline constexpr int kMinMinor = 8;
inline constexpr int kMaxMinor = 15;

// struct _gil_runtime_state, identical 3.8 → 3.15 in default builds; a
// free-threaded build inserts `int enabled` first and shifts everything by 8.
struct GilFields {
  uint32_t enabled;  // only meaningful when free_threaded
  uint32_t interval;
  uint32_t last_holder;
  uint32_t locked;
  uint32_t switch_number;
  uint32_t cond;
  uint32_t mutex;
  uint32_t switch_cond;
  uint32_t switch_mutex;
  uint32_t size;
};
inline constexpr GilFields kGilDefault{0, 0, 8, 16, 24, 32, 80, 120, 168, 208};
inline constexpr GilFields kGilFreeThreaded{0, 8, 16, 24, 32, 40, 88, 128, 176, 216};

inline constexpr const GilFields& gil_fields(bool free_threaded) {
  return free_threaded ? kGilFreeThreaded : kGilDefault;
}

// 3.8–3.11: one GIL embedded in _PyRuntime at a fixed offset (stable across
// patch releases: 3.11.2 and 3.11.7 agree).  0 = not embedded.
inline constexpr uint32_t runtime_gil_offset(int minor) {
  switch (minor) {
    case 8: return 1152;
    case 9: return 352;
    case 10: return 352;
    case 11: return 360;
    default: return 0;
  }
}

// 3.12+: per-interpreter GIL.  Never a fixed offset from _PyRuntime (it moves
// between patch releases); chase _PyRuntime.interpreters.main -> ceval.gil.
struct InterpOffsets {
  uint32_t interpreters_main;  // in _PyRuntime
  uint32_t ceval_gil;          // in PyInterpreterState: pointer to the GIL in use
  uint32_t own_gil_storage;    // in PyInterpreterState: the embedded _gil
  uint32_t interpreters_head;  // in _PyRuntime
  uint32_t interp_next;        // in PyInterpreterState
  uint32_t interp_id;          // in PyInterpreterState (int64_t)
};

// 3.12 has no _Py_DebugOffsets; numbers from DWARF of 3.12.1.
inline constexpr InterpOffsets kInterp312{48, 384, 1040, 40, 0, 8};

// _Py_DebugOffsets (3.13+), at _PyRuntime + 0.  The struct's own layout
// differs per minor, so these are positions *inside* it, by minor.
struct DebugOffsetsLayout {
  uint32_t interpreters_head;  // runtime_state.interpreters_head
  uint32_t interp_ceval_gil;   // interpreter_state.ceval_gil
  uint32_t interp_gil_state;   // interpreter_state.gil_runtime_state
  uint32_t tstate_thread_id;   // thread_state.thread_id
  uint32_t interp_id;          // interpreter_state.id
  uint32_t interp_next;        // interpreter_state.next
  uint32_t tstate_size;        // thread_state.size (the section's first field)
  uint32_t struct_size;        // sizeof(_Py_DebugOffsets)
};
inline constexpr char kDebugCookie[8] = {'x', 'd', 'e', 'b', 'u', 'g', 'p', 'y'};
inline constexpr uint32_t kDebugVersionAt = 8;
inline constexpr uint32_t kDebugFreeThreadedAt = 16;
inline constexpr uint32_t kDebugRuntimeSizeAt = 24;  // runtime_state.size
inline constexpr uint32_t kDebugInterpSizeAt = 48;   // interpreter_state.size

inline constexpr bool debug_offsets_layout(int minor, DebugOffsetsLayout* out) {
  switch (minor) {
    case 13: *out = {40, 112, 120, 192, 56, 64, 152, 584}; return true;
    case 14: *out = {40, 120, 128, 216, 56, 64, 176, 760}; return true;
    case 15: *out = {40, 120, 128, 240, 56, 64, 176, 888}; return true;
    default: return false;
  }
}

// The values stored in a _Py_DebugOffsets block are data of the process,
// not of this table: each is bounded by the size of the struct it points
// into (which the block also states) before anyone uses it as an address.
struct DebugOffsetsCheck {
  bool ok = false;
  uint64_t runtime_size = 0;  // sizeof(_PyRuntimeState) as the block says
};

// u64(at) reads the 8 bytes at position `at` of the block.
template <typename ReadU64>
constexpr DebugOffsetsCheck check_debug_offsets(int minor, const DebugOffsetsLayout& l,
                                                ReadU64 u64) {
  constexpr uint64_t kMaxStruct = uint64_t{64} << 20;
  DebugOffsetsCheck c;
  const uint64_t version = u64(kDebugVersionAt);
  if ((version >> 24) != 3 || ((version >> 16) & 0xff) != static_cast<uint64_t>(minor)) return c;
  if (u64(kDebugFreeThreadedAt) > 1) return c;
  const uint64_t runtime = u64(kDebugRuntimeSizeAt);
  const uint64_t interp = u64(kDebugInterpSizeAt);
  const uint64_t tstate = u64(l.tstate_size);
  if (!runtime || runtime > kMaxStruct || !interp || interp > kMaxStruct || !tstate ||
      tstate > kMaxStruct)
    return c;
  auto fits = [](uint64_t at, uint64_t size, uint64_t within) {
    return at <= within && size <= within - at;
  };
  c.ok = fits(u64(l.interpreters_head), 16, runtime) && fits(u64(l.interp_ceval_gil), 8, interp) &&
         fits(u64(l.interp_gil_state), kGilFreeThreaded.size, interp) &&
         fits(u64(l.interp_id), 8, interp) && fits(u64(l.interp_next), 8, interp) &&
         fits(u64(l.tstate_thread_id), 8, tstate);
  c.runtime_size = runtime;
  return c;
}

// PEP 768 remote debugging (3.14+): positions inside _Py_DebugOffsets of the
// fields `sys.remote_exec` uses.  The values stored there are offsets into
// PyInterpreterState (threads_main, remote_debugging_enabled = config.remote_debug),
// PyThreadState (eval_breaker, remote_debugger_support) and
// _PyRemoteDebuggerSupport (pending call, script path).  Measured with offsetof()
// against Debian's 3.14.10 and 3.15 headers; the same layout in free-threaded builds.
struct RemoteDebugLayout {
  uint32_t interp_threads_main;        // interpreter_state.threads_main
  uint32_t eval_breaker;               // debugger_support.eval_breaker
  uint32_t remote_debugger_support;    // debugger_support.remote_debugger_support
  uint32_t remote_debugging_enabled;   // debugger_support.remote_debugging_enabled
  uint32_t debugger_pending_call;      // debugger_support.debugger_pending_call
  uint32_t debugger_script_path;       // debugger_support.debugger_script_path
  uint32_t debugger_script_path_size;  // debugger_support.debugger_script_path_size
};
// _PY_EVAL_PLEASE_STOP_BIT of tstate->eval_breaker (pycore_ceval.h, 3.14 and 3.15).
inline constexpr uint64_t kEvalPleaseStopBit = uint64_t{1} << 5;

inline constexpr bool remote_debug_layout(int minor, RemoteDebugLayout* out) {
  switch (minor) {
    case 14: *out = {80, 712, 720, 728, 736, 744, 752}; return true;
    case 15: *out = {80, 840, 848, 856, 864, 872, 880}; return true;
    default: return false;
  }
}

// PyThreadState.thread_id (the pthread_t of the thread owning the tstate),
// 3.8–3.12; from 3.13 it comes from _Py_DebugOffsets.
inline constexpr uint32_t tstate_thread_id_offset(int minor) {
  switch (minor) {
    case 8:
    case 9:
    case 10: return 176;
    case 11: return 152;
    case 12: return 136;
    default: return 0;
  }
}

// interpreters.main sits right after interpreters.head in every version.
inline constexpr uint32_t kMainAfterHead = 8;

inline constexpr bool minor_supported(int major, int minor) {
  return major == 3 && minor >= kMinMinor && minor <= kMaxMinor;
}

}  // namespace gilstat::cpython

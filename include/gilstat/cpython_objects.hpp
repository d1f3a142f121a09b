// Where the fields an outside stack and name reader needs live, per CPython
// minor version (x86_64, LP64).  Measured with offsetof() against each
// version's own headers (Py_BUILD_CORE, internal headers): pyenv 3.8.18,
// 3.9.18, 3.10.13, 3.11.7, 3.12.1, 3.13.0; Debian 3.11.2, 3.13.5, 3.14.10,
// 3.15.2; a free-threaded 3.13.5 build.  Patch releases of one minor agree
// (3.11.2/3.11.7 and 3.13.0/3.13.5 were both measured).  docs/pyruntime.md
// says how to re-measure.  Header-only, no syscalls.
#pragma once

#include <cstdint>

namespace gilstat::cpython {

struct ObjectLayout {
  // PyObject / PyVarObject / PyTypeObject / PyHeapTypeObject
  uint32_t ob_type, ob_size;
  uint32_t tp_name, tp_basicsize, tp_flags, tp_dictoffset, ht_cached_keys;
  uint32_t tuple_items, bytes_sval;
  // PyASCIIObject: length, state; sizeof(PyASCIIObject) and
  // sizeof(PyCompactUnicodeObject) (where compact data starts); bit numbers
  // in `state` (kind is 3 bits wide).
  uint32_t unicode_length, unicode_state, unicode_ascii_size, unicode_compact_size;
  uint32_t unicode_kind_bit, unicode_compact_bit, unicode_ascii_bit;
  // PyCodeObject.  linetable is co_lnotab on 3.8/3.9.  qualname and
  // code_adaptive exist from 3.11 (0 before).  firstlineno is an int.
  uint32_t code_filename, code_name, code_qualname, code_code_adaptive, code_firstlineno,
      code_linetable;
  // PyThreadState.  `frame`: PyFrameObject* (3.8-3.10), _PyCFrame* (3.11,
  // 3.12; then cframe_current_frame inside it), _PyInterpreterFrame* (3.13+).
  uint32_t tstate_next, tstate_interp, tstate_thread_id, tstate_native_thread_id, tstate_frame,
      cframe_current_frame;
  // PyFrameObject (3.8-3.10) or _PyInterpreterFrame (3.11+): previous frame,
  // code (a _PyStackRef on 3.14+), f_lasti (int, 3.8-3.10) or the
  // instruction pointer (3.11+), localsplus, owner (char, 3.11+) and
  // is_entry (3.11 only).
  uint32_t frame_back, frame_code, frame_lasti, frame_localsplus, frame_owner, frame_is_entry;
  // PyInterpreterState / _PyRuntimeState
  uint32_t interp_threads_head, interp_next, runtime_interpreters_head;
  // PyDictObject, PyDictKeysObject (keys_size: dk_size, a Py_ssize_t, on
  // 3.8-3.10; dk_log2_size, a byte, from 3.11), PyDictValues (3.13+).
  uint32_t dict_keys, dict_values;
  uint32_t keys_size, keys_log2_index_bytes, keys_kind, keys_nentries, keys_indices;
  uint32_t values_values;
  int32_t values_valid;         // -1: no such field (before 3.13)
  int32_t managed_dict_offset;  // from the object, 3.11+ (0 before)
};

// clang-format off
inline constexpr ObjectLayout kObjects38{8, 16, 24, 32, 168, 288, 872, 24, 32, 16, 32, 48, 72, 2, 5, 6,
    104, 112, 0, 0, 40, 120, 8, 16, 176, 0, 24, 0, 24, 32, 104, 360, 0, 0, 8, 0, 32, 32, 40, 8, 0, 0, 32, 40, 0, -1, 0};
inline constexpr ObjectLayout kObjects39{8, 16, 24, 32, 168, 288, 864, 24, 32, 16, 32, 48, 72, 2, 5, 6,
    104, 112, 0, 0, 40, 120, 8, 16, 176, 0, 24, 0, 24, 32, 104, 360, 0, 0, 8, 0, 32, 32, 40, 8, 0, 0, 32, 40, 0, -1, 0};
inline constexpr ObjectLayout kObjects310{8, 16, 24, 32, 168, 288, 872, 24, 32, 16, 32, 48, 72, 2, 5, 6,
    104, 112, 0, 0, 40, 120, 8, 16, 176, 0, 24, 0, 24, 32, 96, 352, 0, 0, 8, 0, 32, 32, 40, 8, 0, 0, 32, 40, 0, -1, 0};
inline constexpr ObjectLayout kObjects311{8, 16, 24, 32, 168, 288, 872, 24, 32, 16, 32, 48, 72, 2, 5, 6,
    112, 120, 128, 184, 72, 136, 8, 16, 152, 160, 56, 8, 48, 32, 56, 72, 69, 68, 16, 0, 40, 32, 40, 8, 9, 10, 24, 32, 0, -1, -24};
inline constexpr ObjectLayout kObjects312{8, 16, 24, 32, 168, 288, 880, 24, 32, 16, 32, 40, 56, 2, 5, 6,
    112, 120, 128, 192, 68, 136, 8, 16, 136, 144, 56, 0, 8, 0, 56, 72, 70, 0, 72, 0, 40, 32, 40, 8, 9, 10, 24, 32, 0, -1, -24};
inline constexpr ObjectLayout kObjects313{8, 16, 24, 32, 168, 288, 880, 24, 32, 16, 32, 40, 56, 2, 5, 6,
    112, 120, 128, 200, 68, 136, 8, 16, 152, 160, 72, 0, 8, 0, 56, 72, 70, 0, 7344, 7264, 632, 32, 40, 8, 9, 10, 24, 32, 8, 3, -24};
// Free-threaded 3.13 (Py_GIL_DISABLED): a longer object header, the managed
// dict right before the object.
inline constexpr ObjectLayout kObjects313t{24, 32, 40, 48, 184, 304, 896, 40, 48, 32, 48, 56, 72, 2, 5, 6,
    128, 136, 144, 216, 84, 152, 8, 16, 152, 160, 72, 0, 8, 0, 56, 72, 70, 0, 7344, 7264, 632, 48, 56, 8, 9, 10, 24, 32, 8, 3, -8};
inline constexpr ObjectLayout kObjects314{8, 16, 24, 32, 168, 288, 880, 32, 32, 16, 32, 40, 56, 2, 5, 6,
    112, 120, 128, 208, 68, 136, 8, 16, 152, 160, 72, 0, 8, 0, 56, 80, 74, 0, 7344, 7272, 808, 32, 40, 8, 9, 10, 24, 32, 8, 3, -24};
inline constexpr ObjectLayout kObjects315{8, 16, 24, 32, 168, 288, 888, 32, 32, 16, 32, 40, 56, 2, 5, 6,
    112, 120, 128, 208, 68, 136, 8, 16, 176, 184, 72, 0, 8, 0, 56, 80, 74, 0, 7336, 7264, 936, 32, 40, 8, 9, 10, 24, 32, 8, 3, -24};
// clang-format on

// nullptr when the version (or a free-threaded build of it) was not measured.
inline constexpr const ObjectLayout* object_layout(int minor, bool free_threaded) {
  if (free_threaded) return minor == 13 ? &kObjects313t : nullptr;
  switch (minor) {
    case 8:
      return &kObjects38;
    case 9:
      return &kObjects39;
    case 10:
      return &kObjects310;
    case 11:
      return &kObjects311;
    case 12:
      return &kObjects312;
    case 13:
      return &kObjects313;
    case 14:
      return &kObjects314;
    case 15:
      return &kObjects315;
    default:
      return nullptr;
  }
}

// 3.13+: the same fields as the target's own _Py_DebugOffsets states them
// (the reader prefers those: they follow a patch release that moves a
// field).  Positions *inside* _Py_DebugOffsets, measured with offsetof() on
// the 3.13.0, free-threaded 3.13.5, 3.14.10 and 3.15.2 headers (the
// free-threaded 3.13 block has the same positions).  0 = not in the block.
struct DebugObjectPositions {
  uint32_t runtime_interpreters_head, interp_threads_head, interp_next;
  uint32_t tstate_next, tstate_thread_id, tstate_native_thread_id, tstate_frame;
  uint32_t frame_back, frame_code, frame_lasti, frame_localsplus, frame_owner;
  uint32_t code_filename, code_name, code_qualname, code_linetable, code_firstlineno,
      code_code_adaptive;
  uint32_t ob_type, tp_name, tuple_items, unicode_state, unicode_length, unicode_ascii_size;
};
// clang-format off
inline constexpr DebugObjectPositions kDebugObjects313{40, 72, 64, 168, 192, 200, 184,
    232, 240, 248, 256, 264, 280, 288, 296, 304, 312, 344, 360, 376, 408, 544, 552, 560};
inline constexpr DebugObjectPositions kDebugObjects314{40, 72, 64, 192, 216, 224, 208,
    256, 264, 272, 280, 288, 320, 328, 336, 344, 352, 384, 408, 424, 456, 624, 632, 640};
inline constexpr DebugObjectPositions kDebugObjects315{40, 72, 64, 192, 240, 248, 208,
    320, 328, 336, 344, 352, 384, 392, 400, 408, 416, 448, 472, 488, 552, 720, 728, 736};
// clang-format on

inline constexpr const DebugObjectPositions* debug_object_positions(int minor) {
  switch (minor) {
    case 13:
      return &kDebugObjects313;
    case 14:
      return &kDebugObjects314;
    case 15:
      return &kDebugObjects315;
    default:
      return nullptr;
  }
}

// PyInterpreterState.id (int64_t), measured like the table above; the same
// in the free-threaded 3.13 build.
inline constexpr uint32_t interp_id_offset(int minor) {
  switch (minor) {
    case 8:
      return 16;
    case 9:
    case 10:
      return 24;
    case 11:
      return 48;
    case 12:
      return 8;
    case 13:
      return 7272;
    case 14:
      return 7280;
    case 15:
      return 7272;
    default:
      return 0;
  }
}

// _thread.RLock (rlockobject in Modules/_threadmodule.c, private to it):
// where its lock and its owner are.  3.8-3.13: a PyThread_type_lock (on
// Linux a malloc'd sem_t: the futex its waiters sleep on), rlock_owner (the
// owner's thread ident, pthread_self(): PyThreadState.thread_id) and
// rlock_count.  3.14+: an inline _PyRecursiveMutex: its PyMutex byte (bit 0
// locked; waiters park on its address and sleep on a semaphore of their
// own), `thread` (the owner's ident) and `level` (the re-entries: the count
// is level + 1 while locked).  Measured with offsetof() on the struct as
// each version's _threadmodule.c declares it, compiled against that
// version's headers (scripts/measure-object-layout), and checked against
// the live object (tests/e2e/test_dump_rlock.py).
struct RLockLayout {
  uint32_t lock;      // the sem_t pointer (3.8-3.13) or the PyMutex byte (3.14+)
  uint32_t owner;     // thread ident (unsigned long / unsigned long long)
  uint32_t count;     // rlock_count (3.8-3.13) or level (3.14+)
  bool inline_mutex;  // 3.14+
};
inline constexpr RLockLayout kRLock38{16, 24, 32, false};  // 3.8 to 3.13
inline constexpr RLockLayout kRLock313t{32, 40, 48, false};
inline constexpr RLockLayout kRLock314{16, 24, 32, true};  // 3.14, 3.15

// nullptr when the version (or a free-threaded build of it) was not measured.
inline constexpr const RLockLayout* rlock_layout(int minor, bool free_threaded) {
  if (free_threaded) return minor == 13 ? &kRLock313t : nullptr;
  if (minor >= 8 && minor <= 13) return &kRLock38;
  if (minor == 14 || minor == 15) return &kRLock314;
  return nullptr;
}

// _PyInterpreterFrame.owner values that are not Python code the user wrote:
// the C stack's shim/entry frame (FRAME_OWNED_BY_CSTACK = 3 on 3.12/3.13;
// FRAME_OWNED_BY_INTERPRETER = 3 and FRAME_OWNED_BY_CSTACK = 4 on 3.14+).
inline constexpr int kFirstNonCodeOwner = 3;
// _PyStackRef tag bits (3.14+): Py_TAG_BITS is 1 in default builds, 3 in
// free-threaded ones; objects are 8-aligned, so clearing both is safe.
inline constexpr uint64_t kStackRefTagMask = 3;
// Py_TPFLAGS_* bits used to find an instance's attributes.
inline constexpr uint64_t kTpFlagsInlineValues = 1u << 2;  // 3.13+
inline constexpr uint64_t kTpFlagsManagedDict = 1u << 4;   // 3.11+
// glibc's struct pthread: offset of `tid` (pthread_t is its address),
// measured (pthread_self() + offset == gettid()) on glibc 2.36 x86_64; the
// reader checks it against /proc/PID/task and searches when it does not fit.
inline constexpr uint32_t kGlibcPthreadTid = 720;

}  // namespace gilstat::cpython

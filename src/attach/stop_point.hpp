// Whether a thread stopped by ptrace may be made to call dlopen.
//
// dlopen takes the dynamic loader's lock and calls malloc.  A thread stopped
// while it holds either (anywhere inside ld.so, dlopen/dlclose/dlsym/
// dl_iterate_phdr, malloc/free/realloc/..., fork, pthread_create) would wait
// forever on a lock that it holds itself: a deadlocked target.  The lock may be
// held by any frame of the stack, not only the innermost one (malloc's
// mmap/munmap/madvise calls run with an arena lock held), so the whole stack
// is checked:
//
//  1. The stack is unwound from outside with libunwind-ptrace (DWARF CFI from
//     .eh_frame: works for code built with or without frame pointers).  Every
//     return address it reports must be in executable memory right after a
//     call instruction; an unwind that does not reach the outermost frame, or a
//     frame that fails that check, is not trusted.
//  2. When the unwind is not trusted, the rest of the stack (from the last
//     trusted frame to the end of the stack mapping) is scanned word by word:
//     any word that is a return address into unsafe code counts as a frame.
//     This over-approximates (a stale return address left in a frame also
//     counts), which can only make gilstat wait for another stop.
//  3. A frame is unsafe when it lies in the dynamic loader object (ld.so), in a
//     known allocator library (jemalloc, tcmalloc, mimalloc) or inside one of
//     the named allocator / loader / fork entry points of the C library (the
//     C library's own symbol table; its internal helpers such as _int_malloc
//     are only reached through those entry points).  The innermost frame is
//     also unsafe when it is C library code outside a syscall (an internal
//     helper may hold a lock for a few instructions).
#pragma once

#include <sys/types.h>
#include <sys/user.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "attach/process_maps.hpp"
#include "attach/remote_memory.hpp"

namespace gilstat::attach {

// Address ranges of the target in which a thread may hold the loader or an
// allocator lock.
class UnsafeCode {
 public:
  struct Range {
    RemoteAddr start;
    RemoteAddr end;     // exclusive
    std::string label;  // "malloc in libc.so.6", "ld-linux-x86-64.so.2"
  };

  // From the target's maps and the symbol tables of its C library (and libdl,
  // libpthread when mapped).  Throws gilstat::Error when the C library cannot
  // be read: without its symbols nothing can be called safe.
  static UnsafeCode of_process(pid_t pid, const ProcessMaps& maps);
  // For tests.
  static UnsafeCode from_ranges(std::vector<Range> ranges, std::vector<Range> libc_text);

  // The range containing `pc`, or nullptr.
  const Range* find(RemoteAddr pc) const;
  // Whether `pc` is in the C library's code (glibc's libc or musl).
  bool in_libc(RemoteAddr pc) const;
  const std::vector<Range>& ranges() const { return ranges_; }

  // Whether an allocator / loader / thread-creation entry point is named
  // `name` (as exported by a C library).
  static bool is_unsafe_function(std::string_view name);

 private:
  void sort();

  std::vector<Range> ranges_;     // sorted by start, non-overlapping in practice
  std::vector<Range> libc_text_;  // executable mappings of the C library
};

// One frame of a stopped thread: where it executes (the innermost frame) or
// returns to (the others).
struct StackFrame {
  RemoteAddr pc;
  RemoteAddr sp;
  bool exact = false;         // innermost or interrupted by a signal: pc is not a return address
  bool signal_frame = false;  // the signal return trampoline

  bool is_return_address() const { return !exact && !signal_frame; }
  // The address to attribute the frame by (symbol, unsafe range): a return
  // address may be the first byte after the calling function (a call to a
  // noreturn function at its end), so one byte back.
  RemoteAddr lookup_pc() const { return is_return_address() ? pc - 1 : pc; }
};

struct StackWalk {
  std::vector<StackFrame> frames;
  bool complete = false;  // reached the outermost frame, every frame checked
  std::string why_incomplete;
};

// Unwinds threads of one process (ptrace-stopped by us) with libunwind-ptrace,
// checking every return address against the maps and the code before it.
// The target's memory is read a page at a time through `memory`
// (process_vm_readv), not a word per ptrace call; pages of read-only mappings
// (code, .eh_frame) are kept for the next stops, stack pages are read anew
// for each.
class StackUnwinder {
 public:
  // Deeper stacks than this are scanned instead (a deep recursion in C).
  static constexpr size_t kMaxUnwoundFrames = 2048;

  StackUnwinder(const ProcessMaps& maps, const RemoteMemory& memory);
  ~StackUnwinder();
  StackUnwinder(const StackUnwinder&) = delete;
  StackUnwinder& operator=(const StackUnwinder&) = delete;

  // At most `max_frames` frames (a deeper stack is incomplete).
  StackWalk unwind(pid_t tid, size_t max_frames = kMaxUnwoundFrames);
  // libunwind's memory accessor goes through this.
  bool read_word(uint64_t address, uint64_t* value);

  // The .eh_frame_hdr search table of the code mapping holding `ip`, in the
  // target's addresses, read from the target's memory (ELF header, program
  // headers, table header) once per mapping.  libunwind-ptrace would instead
  // open and map the object's file again for every frame that crosses into
  // another object, in every thread; and the vDSO, where a thread reading the
  // clock is often stopped, has no file.  nullptr when the object has no
  // usable table (libunwind's own search is used then).
  struct UnwindTable {
    uint64_t start = 0;  // the code mapping
    uint64_t end = 0;
    uint64_t header = 0;       // .eh_frame_hdr
    uint64_t table = 0;        // its (initial location, FDE) pairs
    uint64_t table_words = 0;  // their size in 8-byte words
  };
  const UnwindTable* unwind_table(uint64_t ip);
  // Reads the tables of every code mapping now, before threads are stopped.
  void prepare();

 private:
  const ProcessMaps& maps_;
  const RemoteMemory& memory_;
  void* space_ = nullptr;                                     // unw_addr_space_t
  std::map<uint64_t, std::vector<std::byte>> lasting_pages_;  // read-only mappings
  std::map<uint64_t, std::vector<std::byte>> stop_pages_;     // the rest, for one stop
  std::map<uint64_t, bool> has_unwind_info_;                  // by pc: code does not change
  std::optional<UnwindTable> read_table(const MapEntry& code) const;

  std::map<uint64_t, std::optional<UnwindTable>> tables_;  // by code mapping start
};

// Whether the bytes just before `return_address` are a call instruction
// (E8 rel32 or FF /2 with any addressing form).
bool follows_call(const RemoteMemory& memory, RemoteAddr return_address);

struct StopVerdict {
  bool safe = false;
  std::string where;  // for an unsafe stop: "free in libc.so.6 (frame 3)"
};

// The decision for a thread stopped with `regs` and stack `walk` (see the
// file comment).  When the walk is incomplete, the stack mapping above the
// last frame is scanned through `memory`.
StopVerdict judge_stop_point(const UnsafeCode& unsafe, const ProcessMaps& maps,
                             const RemoteMemory& memory, const user_regs_struct& regs,
                             const StackWalk& walk);

}  // namespace gilstat::attach

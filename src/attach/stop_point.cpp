#include "attach/stop_point.hpp"

#include <elf.h>
#include <fmt/format.h>
#include <libunwind-ptrace.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <span>

#include "common/error.hpp"

namespace gilstat::attach {

namespace {

// The scan reads the stack in chunks; a stack larger than this cap is unsafe.
constexpr uint64_t kMaxScannedStack = 64ull << 20;
constexpr uint64_t kScanChunk = 256ull << 10;
constexpr uint64_t kPage = 4096;

bool starts_with(std::string_view s, std::string_view prefix) { return s.starts_with(prefix); }

// Libraries whose every function is part of a malloc replacement.
bool is_allocator_library(std::string_view base) {
  return starts_with(base, "libjemalloc") || starts_with(base, "libtcmalloc") ||
         starts_with(base, "libmimalloc") || starts_with(base, "libhoard") ||
         starts_with(base, "libsnmalloc");
}

// Objects whose exported functions are checked by name: the C library and,
// on glibc < 2.34, the libraries that held dlopen and pthread_create.
bool has_checked_symbols(std::string_view base) {
  return is_glibc_libc(base) || is_musl(base) || starts_with(base, "libdl.so") ||
         starts_with(base, "libdl-") || starts_with(base, "libpthread.so") ||
         starts_with(base, "libpthread-");
}

std::string_view basename_of(std::string_view path) {
  const size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

// Length of an `FF /2` (call r/m64) instruction from its ModRM and SIB bytes.
size_t indirect_call_length(uint8_t modrm, uint8_t sib) {
  const unsigned mod = modrm >> 6, rm = modrm & 7;
  if (mod == 3) return 2;
  size_t length = 2 + (rm == 4 ? 1 : 0);
  if (mod == 1) return length + 1;
  if (mod == 2) return length + 4;
  if (rm == 5) return 6;                             // rip-relative
  if (rm == 4 && (sib & 7) == 5) return length + 4;  // SIB without base: disp32
  return length;
}

}  // namespace

bool UnsafeCode::is_unsafe_function(std::string_view name) {
  // The allocator: each of these may hold an arena lock, and some make
  // mmap/munmap/madvise/brk calls while holding it.
  static constexpr std::array<std::string_view, 26> kAllocator = {"malloc",
                                                                  "free",
                                                                  "cfree",
                                                                  "calloc",
                                                                  "realloc",
                                                                  "reallocarray",
                                                                  "memalign",
                                                                  "aligned_alloc",
                                                                  "posix_memalign",
                                                                  "valloc",
                                                                  "pvalloc",
                                                                  "malloc_trim",
                                                                  "malloc_usable_size",
                                                                  "mallinfo",
                                                                  "mallinfo2",
                                                                  "malloc_stats",
                                                                  "malloc_info",
                                                                  "mallopt",
                                                                  "__libc_malloc",
                                                                  "__libc_free",
                                                                  "__libc_calloc",
                                                                  "__libc_realloc",
                                                                  "__libc_memalign",
                                                                  "__libc_valloc",
                                                                  "__libc_pvalloc",
                                                                  "__posix_memalign"};
  // fork takes every arena lock around the clone; pthread_create allocates
  // the new thread's stack and TLS under the loader's TLS lock.
  static constexpr std::array<std::string_view, 5> kOther = {
      "fork", "__libc_fork", "_Fork", "pthread_create", "__pthread_create_2_1"};
  if (std::find(kAllocator.begin(), kAllocator.end(), name) != kAllocator.end()) return true;
  if (std::find(kOther.begin(), kOther.end(), name) != kOther.end()) return true;
  // The loader's entry points: dlopen, dlclose, dlsym, dlvsym, dladdr, dlinfo,
  // dlmopen, dlerror, dl_iterate_phdr, and the private _dl_* / __libc_dl*.
  return starts_with(name, "dl") || starts_with(name, "_dl_") || starts_with(name, "__dl") ||
         starts_with(name, "__libc_dl");
}

UnsafeCode UnsafeCode::of_process(pid_t pid, const ProcessMaps& maps) {
  UnsafeCode code;
  bool have_libc = false;
  for (const std::string& path : maps.object_paths()) {
    const std::string_view base = basename_of(path);
    const bool whole = is_glibc_loader(base) || is_allocator_library(base);
    const bool libc = is_glibc_libc(base) || is_musl(base);
    if (whole || libc) {
      for (const MapEntry* m : maps.mappings_of(path)) {
        if (!m->executable) continue;
        if (whole) code.ranges_.push_back({m->start, m->end, std::string(base)});
        if (libc) code.libc_text_.push_back({m->start, m->end, std::string(base)});
      }
    }
    if (whole || !has_checked_symbols(base)) continue;
    std::string why;
    auto object = open_mapped_object(pid, maps, path, &why);
    if (!object) {
      throw Error(fmt::format("cannot read the symbols of {} in process {}: {}", path, pid, why),
                  "gilstat needs them to tell whether a stopped thread holds a malloc or "
                  "loader lock");
    }
    have_libc = have_libc || libc;
    object->elf.for_each_symbol(elf::SymbolTable::kDynamic, [&](const elf::Symbol& sym) {
      const bool function = sym.type == STT_FUNC || sym.type == STT_GNU_IFUNC;
      if (function && sym.section != SHN_UNDEF && sym.size > 0 && is_unsafe_function(sym.name)) {
        const RemoteAddr start = object->address_of(sym);
        code.ranges_.push_back({start, start + sym.size, fmt::format("{} in {}", sym.name, base)});
      }
      return true;
    });
  }
  if (!have_libc) {
    throw Error(fmt::format("process {} has no shared C library mapped (statically linked?)", pid),
                "gilstat attaches to dynamically linked interpreters only");
  }
  code.sort();
  return code;
}

UnsafeCode UnsafeCode::from_ranges(std::vector<Range> ranges, std::vector<Range> libc_text) {
  UnsafeCode code;
  code.ranges_ = std::move(ranges);
  code.libc_text_ = std::move(libc_text);
  code.sort();
  return code;
}

void UnsafeCode::sort() {
  std::sort(ranges_.begin(), ranges_.end(),
            [](const Range& a, const Range& b) { return a.start < b.start; });
}

const UnsafeCode::Range* UnsafeCode::find(RemoteAddr pc) const {
  // Aliases (malloc / __libc_malloc) give equal ranges; otherwise the ranges
  // do not overlap, so the last few starting at or below pc decide.
  auto it = std::upper_bound(ranges_.begin(), ranges_.end(), pc,
                             [](RemoteAddr a, const Range& r) { return a < r.start; });
  for (int back = 0; back < 4 && it != ranges_.begin(); ++back) {
    --it;
    if (pc < it->end) return &*it;
  }
  return nullptr;
}

bool UnsafeCode::in_libc(RemoteAddr pc) const {
  return std::any_of(libc_text_.begin(), libc_text_.end(),
                     [&](const Range& r) { return pc >= r.start && pc < r.end; });
}

bool follows_call(const RemoteMemory& memory, RemoteAddr return_address) {
  // The 8 bytes before it; only those in its own page when the page before
  // is not mapped (code at the start of a mapping).  Zeros stand in for the
  // rest: they match no call.
  std::array<std::byte, 8> before{};
  const size_t in_page = std::min<uint64_t>(before.size(), return_address.value() % kPage);
  if (!memory.read(return_address - before.size(), before) &&
      (in_page < 2 || !memory.read(return_address - in_page,
                                   std::span(before).subspan(before.size() - in_page)))) {
    return false;
  }
  auto byte = [&](size_t back) { return static_cast<uint8_t>(before[before.size() - back]); };
  if (byte(5) == 0xE8) return true;  // call rel32
  for (size_t length = 2; length <= 7; ++length) {
    const uint8_t modrm = byte(length - 1);
    const uint8_t sib = length >= 3 ? byte(length - 2) : 0;
    if (byte(length) == 0xFF && ((modrm >> 3) & 7) == 2 &&
        indirect_call_length(modrm, sib) == length) {
      return true;
    }
  }
  return false;
}

// libunwind's binary search of an .eh_frame_hdr table (exported, not in its
// public headers; _UPT_find_proc_info uses it the same way).
extern "C" int _Ux86_64_dwarf_search_unwind_table(unw_addr_space_t, unw_word_t, unw_dyn_info_t*,
                                                  unw_proc_info_t*, int, void*);

namespace {

// The unwinder whose unwind() is running on this thread: libunwind's
// accessors get the _UPT context as their argument, not ours.
thread_local StackUnwinder* t_unwinder = nullptr;

int cached_access_mem(unw_addr_space_t space, unw_word_t address, unw_word_t* value, int write,
                      void* upt) {
  uint64_t word = 0;
  if (!write && t_unwinder && t_unwinder->read_word(address, &word)) {
    *value = word;
    return 0;
  }
  return _UPT_access_mem(space, address, value, write, upt);
}

// Our tables first (StackUnwinder::unwind_table), libunwind's own search else.
int find_proc_info(unw_addr_space_t space, unw_word_t ip, unw_proc_info_t* info,
                   int need_unwind_info, void* upt) {
  if (const auto* known = t_unwinder ? t_unwinder->unwind_table(ip) : nullptr) {
    unw_dyn_info_t table{};
    table.format = UNW_INFO_FORMAT_REMOTE_TABLE;
    table.start_ip = known->start;
    table.end_ip = known->end;
    table.u.rti.segbase = known->header;
    table.u.rti.table_data = known->table;
    table.u.rti.table_len = known->table_words;
    return _Ux86_64_dwarf_search_unwind_table(space, ip, &table, info, need_unwind_info, upt);
  }
  return _UPT_find_proc_info(space, ip, info, need_unwind_info, upt);
}

unw_accessors_t cached_accessors() {
  unw_accessors_t accessors = _UPT_accessors;
  accessors.access_mem = cached_access_mem;
  accessors.find_proc_info = find_proc_info;
  return accessors;
}

}  // namespace

StackUnwinder::StackUnwinder(const ProcessMaps& maps, const RemoteMemory& memory)
    : maps_(maps), memory_(memory) {
  static unw_accessors_t accessors = cached_accessors();
  unw_addr_space_t space = unw_create_addr_space(&accessors, 0);
  if (space) unw_set_caching_policy(space, UNW_CACHE_GLOBAL);
  space_ = space;
}

StackUnwinder::~StackUnwinder() {
  if (space_) unw_destroy_addr_space(static_cast<unw_addr_space_t>(space_));
}

bool StackUnwinder::read_word(uint64_t address, uint64_t* value) {
  const uint64_t page = address & ~(kPage - 1);
  if (address - page > kPage - sizeof(uint64_t)) {
    return memory_.read(RemoteAddr(address), std::as_writable_bytes(std::span(value, 1)));
  }
  const MapEntry* m = maps_.find(RemoteAddr(address));
  if (!m) return false;
  auto& cache = m->writable ? stop_pages_ : lasting_pages_;
  auto it = cache.find(page);
  if (it == cache.end()) {
    std::vector<std::byte> bytes(kPage);
    if (!memory_.read(RemoteAddr(page), bytes)) return false;
    it = cache.emplace(page, std::move(bytes)).first;
  }
  std::memcpy(value, it->second.data() + (address - page), sizeof(*value));
  return true;
}

std::optional<StackUnwinder::UnwindTable> StackUnwinder::read_table(const MapEntry& code) const {
  // The ELF header is at the start of the object's mapping of file offset 0
  // (for the vDSO, its only mapping); the program headers follow it there.
  const MapEntry* head = code.path == "[vdso]" ? &code : nullptr;
  if (code.is_file()) {
    for (const MapEntry* m : maps_.mappings_of(code.path)) {
      if (m->offset == 0) {
        head = m;
        break;
      }
    }
  }
  if (!head) return std::nullopt;
  auto ehdr = memory_.read_value<Elf64_Ehdr>(head->start);
  if (!ehdr || std::memcmp(ehdr->e_ident, ELFMAG, SELFMAG) != 0 ||
      ehdr->e_phentsize != sizeof(Elf64_Phdr) || ehdr->e_phnum == 0 || ehdr->e_phnum > 256) {
    return std::nullopt;
  }
  std::vector<Elf64_Phdr> phdrs(ehdr->e_phnum);
  if (!memory_.read(head->start + ehdr->e_phoff, std::as_writable_bytes(std::span(phdrs)))) {
    return std::nullopt;
  }
  std::optional<uint64_t> bias;
  std::optional<Elf64_Phdr> eh_frame_hdr;
  for (const Elf64_Phdr& p : phdrs) {
    if (p.p_type == PT_LOAD && !bias && (p.p_offset & ~(kPage - 1)) == head->offset) {
      bias = head->start.value() - (p.p_vaddr & ~(kPage - 1));
    }
    if (p.p_type == PT_GNU_EH_FRAME) eh_frame_hdr = p;
  }
  if (!bias || !eh_frame_hdr) return std::nullopt;
  // version 1; eh_frame_ptr any; fde_count udata4; table datarel|sdata4 (what
  // linkers write, and the only form libunwind searches remotely).
  const RemoteAddr header(*bias + eh_frame_hdr->p_vaddr);
  std::array<uint8_t, 12> h{};
  if (!memory_.read(header, std::as_writable_bytes(std::span(h)))) return std::nullopt;
  if (h[0] != 1 || h[2] != 0x03 || h[3] != 0x3b) return std::nullopt;
  uint32_t fde_count = 0;
  std::memcpy(&fde_count, h.data() + 8, sizeof(fde_count));
  if (12 + uint64_t{fde_count} * 8 > eh_frame_hdr->p_memsz) return std::nullopt;
  return UnwindTable{code.start.value(), code.end.value(), header.value(), header.value() + 12,
                     uint64_t{fde_count} * 8 / sizeof(unw_word_t)};
}

const StackUnwinder::UnwindTable* StackUnwinder::unwind_table(uint64_t ip) {
  const MapEntry* code = maps_.find(RemoteAddr(ip));
  if (!code || !code->executable) return nullptr;
  auto it = tables_.find(code->start.value());
  if (it == tables_.end()) it = tables_.emplace(code->start.value(), read_table(*code)).first;
  return it->second ? &*it->second : nullptr;
}

void StackUnwinder::prepare() {
  for (const MapEntry& m : maps_.entries()) {
    if (m.executable) unwind_table(m.start.value());
  }
}

StackWalk StackUnwinder::unwind(pid_t tid, size_t max_frames) {
  StackWalk walk;
  auto space = static_cast<unw_addr_space_t>(space_);
  if (!space) {
    walk.why_incomplete = "libunwind: cannot create an address space";
    return walk;
  }
  void* context = _UPT_create(tid);
  if (!context) {
    walk.why_incomplete = "libunwind: _UPT_create failed";
    return walk;
  }
  stop_pages_.clear();
  t_unwinder = this;
  unw_cursor_t cursor;
  int step = unw_init_remote(&cursor, space, context);
  if (step < 0) walk.why_incomplete = fmt::format("libunwind: init failed ({})", step);
  bool previous_was_signal = true;  // the innermost pc is exact too
  while (step >= 0) {
    unw_word_t ip = 0, sp = 0;
    if (unw_get_reg(&cursor, UNW_REG_IP, &ip) < 0 || unw_get_reg(&cursor, UNW_REG_SP, &sp) < 0) {
      walk.why_incomplete = "libunwind: cannot read a frame's registers";
      break;
    }
    StackFrame frame{RemoteAddr(ip), RemoteAddr(sp), previous_was_signal,
                     unw_is_signal_frame(&cursor) > 0};
    const MapEntry* m = maps_.find(frame.pc);
    // A return address must point into code, right after a call; a frame
    // built from wrong unwind data (e.g. a file that differs from the one
    // mapped) would fail this.  A signal trampoline is entered by a return.
    if (!m || !m->executable ||
        (!frame.exact && !frame.signal_frame && !follows_call(memory_, frame.pc))) {
      walk.why_incomplete = fmt::format("frame {} at {} is not a return address",
                                        walk.frames.size(), to_string(frame.pc));
      break;
    }
    previous_was_signal = frame.signal_frame;
    walk.frames.push_back(frame);
    if (walk.frames.size() >= max_frames) {
      walk.why_incomplete = "more frames than the unwinder follows";
      break;
    }
    // Without call frame information for this frame libunwind would guess
    // the caller from rbp, and takes rbp == 0 for the end of the stack: what
    // lies further out is left to the scan.  (unw_get_proc_info reports a
    // missing FDE as success with the one-byte range [ip, ip + 1).)
    auto known = has_unwind_info_.find(ip);
    if (known == has_unwind_info_.end()) {
      unw_proc_info_t info{};
      const bool found = unw_get_proc_info(&cursor, &info) == 0 && info.end_ip > info.start_ip + 1;
      known = has_unwind_info_.emplace(ip, found).first;
    }
    if (!known->second) {
      walk.why_incomplete = fmt::format("no unwind information for frame {} at {}",
                                        walk.frames.size() - 1, to_string(frame.pc));
      break;
    }
    step = unw_step(&cursor);
    if (step == 0) walk.complete = true;
    if (step < 0) walk.why_incomplete = fmt::format("libunwind: step failed ({})", step);
    if (step <= 0) break;
  }
  t_unwinder = nullptr;
  _UPT_destroy(context);
  return walk;
}

namespace {

// Scans [from, end of its mapping) for return addresses into unsafe code.
std::optional<std::string> scan_stack(const UnsafeCode& unsafe, const ProcessMaps& maps,
                                      const RemoteMemory& memory, RemoteAddr from) {
  const MapEntry* stack = maps.find(from);
  if (!stack) return fmt::format("the stack pointer {} is not mapped", to_string(from));
  const RemoteAddr begin(from.value() & ~uint64_t{7});
  if (stack->end - begin > kMaxScannedStack) return "a stack too large to scan";
  std::vector<uint64_t> words(kScanChunk / 8);
  for (RemoteAddr at = begin; at < stack->end; at = at + kScanChunk) {
    const uint64_t bytes = std::min<uint64_t>(kScanChunk, stack->end - at);
    words.resize(bytes / 8);
    if (!memory.read(at, std::as_writable_bytes(std::span(words)))) {
      return fmt::format("cannot read the stack at {}", to_string(at));
    }
    for (size_t i = 0; i < words.size(); ++i) {
      const RemoteAddr value(words[i]);
      const UnsafeCode::Range* r = unsafe.find(value - 1);
      if (r && follows_call(memory, value)) {
        return fmt::format("{} (a return address at {} on the stack)", r->label,
                           to_string(at + 8 * i));
      }
    }
  }
  return std::nullopt;
}

}  // namespace

StopVerdict judge_stop_point(const UnsafeCode& unsafe, const ProcessMaps& maps,
                             const RemoteMemory& memory, const user_regs_struct& regs,
                             const StackWalk& walk) {
  const RemoteAddr rip(regs.rip);
  const bool in_syscall = static_cast<int64_t>(regs.orig_rax) >= 0;
  if (const UnsafeCode::Range* r = unsafe.find(rip)) return {false, r->label};
  if (unsafe.in_libc(rip) && !in_syscall) {
    return {false, "C library code outside a syscall (it may hold an internal lock)"};
  }
  for (size_t i = 0; i < walk.frames.size(); ++i) {
    if (const UnsafeCode::Range* r = unsafe.find(walk.frames[i].lookup_pc())) {
      return {false, fmt::format("{} (frame {})", r->label, i)};
    }
  }
  if (walk.complete) return {true, {}};
  const RemoteAddr scan_from = walk.frames.empty() ? RemoteAddr(regs.rsp) : walk.frames.back().sp;
  if (auto found = scan_stack(unsafe, maps, memory, scan_from)) return {false, *found};
  return {true, {}};
}

}  // namespace gilstat::attach

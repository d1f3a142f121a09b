// /proc/PID/maps: which file is mapped where, and how to open that file from
// here even when the target lives in another mount namespace.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "attach/remote_memory.hpp"
#include "elf/elf_file.hpp"
#include "elf/file_bytes.hpp"

namespace gilstat::attach {

struct MapEntry {
  RemoteAddr start;
  RemoteAddr end;  // exclusive
  bool readable = false;
  bool writable = false;
  bool executable = false;
  bool shared = false;
  uint64_t offset = 0;  // file offset of `start`
  uint32_t dev_major = 0;
  uint32_t dev_minor = 0;
  uint64_t inode = 0;
  std::string path;  // as the target names it, without " (deleted)"; "[heap]", "" ...
  bool deleted = false;

  // Backed by a file (not [heap], [vdso], anonymous memory).
  bool is_file() const { return inode != 0 && !path.empty() && path.front() == '/'; }
  bool contains(RemoteAddr addr) const { return addr >= start && addr < end; }
  std::string_view basename() const;
};

class ProcessMaps {
 public:
  // Reads /proc/PID/maps.  Throws gilstat::Error (no such process / permission).
  static ProcessMaps read(pid_t pid);
  // Parses maps text; lines that do not parse are skipped (the kernel's format
  // is fixed, but a path may contain anything except a newline).
  static ProcessMaps parse(std::string_view text);

  const std::vector<MapEntry>& entries() const { return entries_; }
  const MapEntry* find(RemoteAddr addr) const;
  // Unique file-backed paths, in address order of their first mapping.
  std::vector<std::string> object_paths() const;
  // All mappings of one file, in address order.
  std::vector<const MapEntry*> mappings_of(std::string_view path) const;
  // The first file-backed object whose basename satisfies `match`.
  std::optional<std::string> find_object(
      const std::function<bool(std::string_view basename)>& match) const;

 private:
  std::vector<MapEntry> entries_;
};

// What a mapped object is, by its basename.
bool is_glibc_libc(std::string_view base);    // libc.so.6, libc-2.31.so
bool is_musl(std::string_view base);          // musl's libc, which is also its loader
bool is_glibc_loader(std::string_view base);  // ld-linux-x86-64.so.2, ld-2.31.so

// Load bias (runtime address minus ELF vaddr) of an object, from its mappings:
// the mapping of the first PT_LOAD's page starts at bias + that page's vaddr.
std::optional<uint64_t> load_bias(const std::vector<const MapEntry*>& mappings,
                                  const elf::ElfFile& elf);

// A path through which this process opens the file behind `entry` of `pid`,
// in order of exactness: /proc/PID/map_files/<range> (the very inode mapped,
// even when deleted or replaced; needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE),
// /proc/PID/root/<path> (the target's mount namespace), then <path>.
std::vector<std::string> candidate_local_paths(pid_t pid, const MapEntry& entry);

// An ELF object mapped in a target: the file as the target sees it, parsed,
// with its load bias.
struct MappedObject {
  std::string path;        // as the target names it
  std::string local_path;  // the path we opened
  elf::FileBytes file;
  elf::ElfFile elf;
  uint64_t bias = 0;

  RemoteAddr address_of(const elf::Symbol& sym) const { return RemoteAddr(bias + sym.value); }
  // find_symbol + address; nullopt when undefined.
  std::optional<RemoteAddr> symbol_address(std::string_view name,
                                           std::string_view version = {}) const;
};

// Opens and parses the object mapped at `path` in `pid`.  Returns nullopt with
// a reason in *why when it cannot be opened, is not ELF, or its bias cannot be
// computed.
std::optional<MappedObject> open_mapped_object(pid_t pid, const ProcessMaps& maps,
                                               const std::string& path, std::string* why = nullptr);

}  // namespace gilstat::attach

// The function symbols of one ELF object, for naming code addresses.
//
// Which table: the object's own .symtab when it has one; else the .symtab of
// its separate debug file (debug_file.hpp: build-id, then .gnu_debuglink,
// each verified); else its .dynsym.  A symbol names an address only inside
// [st_value, st_value + st_size) (a zero-size symbol only its own address):
// an address that no symbol covers gets no name rather than the nearest
// symbol before it, which in a stripped executable would be an unrelated one.
//
// Every field of the files is untrusted (elf::ElfFile checks them); the table
// is built on the first lookup and holds at most kMaxSymbols entries (names
// point into the mapped file, not copied).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "elf/elf_file.hpp"
#include "elf/file_bytes.hpp"
#include "symbols/debug_file.hpp"

namespace gilstat::symbols {

enum class SymbolSource : uint8_t {
  kNone,       // no usable table: addresses are shown as object+0xoffset
  kSymtab,     // the object's own .symtab
  kDebugFile,  // .symtab of a separate debug file
  kDynsym,     // only the exported symbols (.dynsym)
};
std::string_view to_string(SymbolSource source);

struct SymbolHit {
  std::string_view name;  // as in the table (C++ names mangled)
  uint64_t start = 0;     // ELF vaddr
  uint64_t size = 0;
};

class ObjectSymbols {
 public:
  static constexpr size_t kMaxSymbols = 4u << 20;

  // An object read from a file; `path` is the object's name in the target
  // (used to find its debug file by .gnu_debuglink).
  ObjectSymbols(std::string path, elf::FileBytes file, elf::ElfFile elf, DebugSearch search);
  // An object image read from memory (the vDSO).
  ObjectSymbols(std::string path, std::vector<std::byte> image);
  ObjectSymbols(const ObjectSymbols&) = delete;
  ObjectSymbols& operator=(const ObjectSymbols&) = delete;

  // Opens and parses a file (for tests and tools): nullopt with the reason.
  static std::unique_ptr<ObjectSymbols> open_file(const std::string& path, DebugSearch search,
                                                  std::string* why = nullptr);

  const std::string& path() const { return path_; }
  // The object's ELF (nullptr for an image that did not parse).
  const elf::ElfFile* elf() const { return elf_ ? &*elf_ : nullptr; }
  const std::string& build_id() const { return build_id_; }  // hex, "" when none

  // The function symbol covering `vaddr` (innermost when they nest).
  std::optional<SymbolHit> lookup(uint64_t vaddr);
  // Where the names come from; loads the table.
  SymbolSource source();
  const std::string& debug_file_path();  // the separate debug file used, or ""
  size_t symbol_count();

 private:
  struct Entry {
    uint64_t start;
    uint64_t end;  // exclusive; start + 1 for a zero-size symbol
    std::string_view name;
    bool exact_only;  // zero size: only `start` itself
  };

  void load();
  void take_functions(const elf::ElfFile& elf, elf::SymbolTable table);

  std::string path_;
  std::optional<elf::FileBytes> file_;
  std::vector<std::byte> image_;
  std::optional<elf::ElfFile> elf_;
  std::string build_id_;
  DebugSearch search_;
  std::optional<DebugFile> debug_;
  bool loaded_ = false;
  SymbolSource source_ = SymbolSource::kNone;
  std::vector<Entry> entries_;     // by start
  std::vector<uint64_t> max_end_;  // max_end_[i]: the largest end among entries_[0..i]
};

// The readable form of a symbol name: C++ names demangled
// (abi::__cxa_demangle), anything else as is.
std::string demangle(std::string_view name);

}  // namespace gilstat::symbols

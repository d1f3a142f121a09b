// Read-only ELF64 (little-endian) reader over a byte span: header tables,
// sections, segments, symbols (GNU hash or linear scan, .dynsym and .symtab),
// symbol versions.  The bytes are untrusted: every offset and size is checked,
// a malformed table is ignored rather than trusted, and no lookup reads
// outside the span.  No syscalls; file_bytes.hpp maps a file into a span.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "elf/checked.hpp"

namespace gilstat::elf {

enum class SymbolTable : uint8_t { kDynamic, kStatic };

struct Symbol {
  std::string_view name;  // points into the file's bytes
  uint64_t value = 0;     // st_value: an address in the file's own address space
  uint64_t size = 0;
  uint8_t type = 0;      // STT_*
  uint8_t binding = 0;   // STB_*
  uint16_t section = 0;  // st_shndx
  SymbolTable table = SymbolTable::kDynamic;
  std::string_view version;     // "GLIBC_2.34"; empty when unversioned (or in .symtab)
  bool hidden_version = false;  // "name@VER" (compat) as opposed to "name@@VER" (default)
};

struct Segment {
  uint32_t type = 0;  // PT_*
  uint32_t flags = 0;
  uint64_t offset = 0;
  uint64_t vaddr = 0;
  uint64_t filesz = 0;
  uint64_t memsz = 0;
  uint64_t align = 0;
};

struct Section {
  std::string_view name;
  uint32_t type = 0;  // SHT_*
  uint64_t flags = 0;
  uint64_t addr = 0;
  uint64_t offset = 0;
  uint64_t size = 0;
  uint32_t link = 0;
  uint32_t info = 0;
  uint64_t entsize = 0;
};

class ElfFile {
 public:
  // Validates the identification, the header and the program/section header
  // tables.  `data` must outlive the ElfFile (the returned names point into it).
  // Returns nullopt, with the reason in *error when given, for anything that is
  // not a well-formed ELF64 little-endian file.
  static std::optional<ElfFile> parse(std::span<const std::byte> data,
                                      std::string* error = nullptr);

  uint16_t type() const { return type_; }  // ET_EXEC, ET_DYN, ...
  uint16_t machine() const { return machine_; }
  std::span<const std::byte> bytes() const { return data_.span(); }

  const std::vector<Segment>& segments() const { return segments_; }
  const std::vector<Section>& sections() const { return sections_; }
  std::optional<Section> section(std::string_view name) const;
  std::optional<std::span<const std::byte>> section_bytes(const Section& section) const;
  // The PT_LOAD with the lowest p_vaddr (the loader maps it first).
  std::optional<Segment> first_load_segment() const;
  // DT_SONAME, when the file has a dynamic section naming itself.
  std::optional<std::string_view> soname() const;
  // The NT_GNU_BUILD_ID note's bytes (from the PT_NOTE segments, else the
  // SHT_NOTE sections); nullopt when absent or empty.
  std::optional<std::span<const std::byte>> build_id() const;
  // The .gnu_debuglink section: the separate debug file's name and the CRC-32
  // of its contents.
  struct DebugLink {
    std::string_view name;
    uint32_t crc = 0;
  };
  std::optional<DebugLink> debug_link() const;

  // A defined symbol named `name`: .dynsym first (GNU hash when present, else a
  // linear scan), then .symtab.  With `version` ("GLIBC_2.34") only a .dynsym
  // entry of that version matches; without, the default version ("@@") wins
  // over a compat one ("@").
  std::optional<Symbol> find_symbol(std::string_view name, std::string_view version = {}) const;
  std::optional<Symbol> find_dynamic_symbol(std::string_view name,
                                            std::string_view version = {}) const;
  std::optional<Symbol> find_static_symbol(std::string_view name) const;
  // Every entry of a table (defined or not), in table order; stops when `fn`
  // returns false.
  void for_each_symbol(SymbolTable table, const std::function<bool(const Symbol&)>& fn) const;

  // The file bytes behind [vaddr, vaddr + size) when they lie wholly inside the
  // file-backed part of one PT_LOAD (nullopt for .bss and for gaps).
  std::optional<std::span<const std::byte>> bytes_at_vaddr(uint64_t vaddr, uint64_t size) const;
  std::optional<std::string_view> cstring_at_vaddr(uint64_t vaddr, uint64_t max_length) const;
  // True when vaddr lies inside some PT_LOAD's memory image (file-backed or not).
  bool vaddr_is_loaded(uint64_t vaddr) const;

 private:
  struct SymbolTableInfo {
    ByteView symbols;  // whole Elf64_Sym array
    ByteView strings;
    uint64_t count = 0;
  };
  struct VersionName {
    uint16_t index;
    std::string_view name;
  };

  explicit ElfFile(ByteView data) : data_(data) {}
  bool load_tables(std::string* error);
  void load_symbol_tables();
  void load_versions();
  std::optional<Symbol> symbol_at(SymbolTable table, uint64_t index) const;
  std::optional<Symbol> gnu_hash_lookup(std::string_view name, std::string_view version,
                                        bool* usable) const;
  std::optional<Symbol> linear_lookup(SymbolTable table, std::string_view name,
                                      std::string_view version) const;

  ByteView data_;
  uint16_t type_ = 0;
  uint16_t machine_ = 0;
  std::vector<Segment> segments_;
  std::vector<Section> sections_;
  std::optional<SymbolTableInfo> dynsym_;
  std::optional<SymbolTableInfo> symtab_;
  std::optional<ByteView> gnu_hash_;
  std::optional<ByteView> versym_;  // uint16_t per .dynsym entry
  std::vector<VersionName> version_names_;
};

// The GNU hash function (DT_GNU_HASH), exposed for tests.
uint32_t gnu_hash(std::string_view name);

// The CRC-32 that .gnu_debuglink records (IEEE 802.3, as zlib's crc32), of
// `bytes`, continuing from `crc` (0 to start).
uint32_t debuglink_crc32(std::span<const std::byte> bytes, uint32_t crc = 0);

// Lower-case hex of `bytes` ("571d98e0..."): how build-ids are named.
std::string to_hex(std::span<const std::byte> bytes);

}  // namespace gilstat::elf

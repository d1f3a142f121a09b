// The ELF reader against real files of this machine, and against truncated
// and corrupted copies of them (which must never crash it).
#include "elf/elf_file.hpp"

#include <elf.h>
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "elf/file_bytes.hpp"
#include "test_support.hpp"

namespace gilstat::elf {
namespace {

using attach::test::kDebianPython311;
using attach::test::kLibc;
using attach::test::kLibPython312;

struct Loaded {
  FileBytes file;
  ElfFile elf;
};

std::optional<Loaded> load(const std::string& path) {
  auto file = FileBytes::open(path);
  if (!file) return std::nullopt;
  std::string error;
  auto elf = ElfFile::parse(file->bytes(), &error);
  EXPECT_TRUE(elf) << path << ": " << error;
  if (!elf) return std::nullopt;
  return Loaded{std::move(*file), std::move(*elf)};
}

#define LOAD_OR_SKIP(var, path)                                      \
  auto var##_opt = load(path);                                       \
  if (!var##_opt) GTEST_SKIP() << (path) << " is not readable here"; \
  const ElfFile& var = var##_opt->elf

TEST(ElfFile, LibcExportsTheLoaderEntryPoints) {
  LOAD_OR_SKIP(libc, kLibc);
  EXPECT_EQ(libc.type(), ET_DYN);
  EXPECT_EQ(libc.machine(), EM_X86_64);
  EXPECT_EQ(libc.soname(), "libc.so.6");
  for (const char* name : {"dlopen", "dlsym", "mmap", "__errno_location"}) {
    auto sym = libc.find_dynamic_symbol(name);
    ASSERT_TRUE(sym) << name;
    EXPECT_EQ(sym->type, STT_FUNC) << name;
    EXPECT_NE(sym->value, 0u) << name;
    EXPECT_GT(sym->size, 0u) << name;
    EXPECT_FALSE(sym->hidden_version) << name << ": the default version must win";
    EXPECT_TRUE(libc.vaddr_is_loaded(sym->value)) << name;
  }
  EXPECT_FALSE(libc.find_dynamic_symbol("gilstat_no_such_symbol_anywhere"));
}

TEST(ElfFile, VersionedLookupsPickTheRightDefinition) {
  LOAD_OR_SKIP(libc, kLibc);
  auto by_default = libc.find_dynamic_symbol("dlopen");
  ASSERT_TRUE(by_default);
  if (by_default->version != "GLIBC_2.34") {
    GTEST_SKIP() << "glibc older than 2.34 (dlopen@@" << by_default->version << ")";
  }
  auto compat = libc.find_dynamic_symbol("dlopen", "GLIBC_2.2.5");
  ASSERT_TRUE(compat);
  EXPECT_TRUE(compat->hidden_version);
  EXPECT_EQ(compat->version, "GLIBC_2.2.5");
  auto explicit_default = libc.find_dynamic_symbol("dlopen", "GLIBC_2.34");
  ASSERT_TRUE(explicit_default);
  EXPECT_FALSE(explicit_default->hidden_version);
  EXPECT_FALSE(libc.find_dynamic_symbol("dlopen", "GLIBC_1.0"));
  // glibc >= 2.34 no longer exports the private loader entry point.
  EXPECT_FALSE(libc.find_dynamic_symbol("__libc_dlopen_mode"));
}

TEST(ElfFile, GnuHashLookupAgreesWithALinearScan) {
  LOAD_OR_SKIP(libc, kLibc);
  ASSERT_TRUE(libc.section(".gnu.hash"));
  size_t checked = 0;
  libc.for_each_symbol(SymbolTable::kDynamic, [&](const Symbol& sym) {
    if (sym.section == SHN_UNDEF || sym.name.empty() || sym.binding == STB_LOCAL) return true;
    auto found = libc.find_dynamic_symbol(sym.name, sym.version);
    EXPECT_TRUE(found) << sym.name << "@" << sym.version;
    if (found) {
      EXPECT_EQ(found->value, sym.value) << sym.name;
    }
    ++checked;
    return true;
  });
  EXPECT_GT(checked, 2000u);
}

TEST(ElfFile, StaticDebianPythonIsANonPieExecutableExportingTheRuntime) {
  GILSTAT_REQUIRE_EXECUTABLE(kDebianPython311);
  LOAD_OR_SKIP(python, kDebianPython311);
  EXPECT_EQ(python.type(), ET_EXEC);
  auto first = python.first_load_segment();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->vaddr, 0x400000u);
  auto runtime = python.find_symbol("_PyRuntime");
  ASSERT_TRUE(runtime);
  EXPECT_EQ(runtime->type, STT_OBJECT);
  EXPECT_GT(runtime->size, 0u);
  auto version = python.find_symbol("Py_Version");
  ASSERT_TRUE(version);
  EXPECT_EQ(version->size, 8u);
  auto bytes = python.bytes_at_vaddr(version->value, 8);
  ASSERT_TRUE(bytes);
  uint64_t hex;
  std::memcpy(&hex, bytes->data(), 8);
  EXPECT_EQ(hex >> 16, 0x030bu) << std::hex << hex;
}

TEST(ElfFile, SharedLibpythonWithSymtab) {
  LOAD_OR_SKIP(lib, kLibPython312);
  EXPECT_EQ(lib.type(), ET_DYN);
  EXPECT_EQ(lib.soname(), "libpython3.12.so.1.0");
  auto runtime = lib.find_dynamic_symbol("_PyRuntime");
  ASSERT_TRUE(runtime);
  auto version = lib.find_dynamic_symbol("Py_Version");
  ASSERT_TRUE(version);
  auto bytes = lib.bytes_at_vaddr(version->value, 8);
  ASSERT_TRUE(bytes);
  uint64_t hex;
  std::memcpy(&hex, bytes->data(), 8);
  EXPECT_EQ(hex, 0x030c01f0u);
  // .symtab has the same object, and local symbols .dynsym lacks.
  ASSERT_TRUE(lib.section(".symtab"));
  auto from_symtab = lib.find_static_symbol("_PyRuntime");
  ASSERT_TRUE(from_symtab);
  EXPECT_EQ(from_symtab->value, runtime->value);
  std::optional<Symbol> local;
  lib.for_each_symbol(SymbolTable::kStatic, [&](const Symbol& s) {
    if (s.binding == STB_LOCAL && s.type == STT_FUNC && !s.name.empty() && s.value != 0) {
      local = s;
      return false;
    }
    return true;
  });
  ASSERT_TRUE(local);
  EXPECT_FALSE(lib.find_dynamic_symbol(local->name));
  auto found = lib.find_symbol(local->name);
  ASSERT_TRUE(found);
  EXPECT_EQ(found->table, SymbolTable::kStatic);
}

TEST(ElfFile, SectionsAndSegments) {
  LOAD_OR_SKIP(libc, kLibc);
  auto text = libc.section(".text");
  ASSERT_TRUE(text);
  EXPECT_EQ(text->type, SHT_PROGBITS);
  EXPECT_TRUE(text->flags & SHF_EXECINSTR);
  auto bytes = libc.section_bytes(*text);
  ASSERT_TRUE(bytes);
  EXPECT_EQ(bytes->size(), text->size);
  EXPECT_FALSE(libc.section(".no_such_section"));
  size_t loads = 0;
  for (const Segment& s : libc.segments()) loads += s.type == PT_LOAD;
  EXPECT_GE(loads, 2u);
  EXPECT_EQ(libc.first_load_segment()->offset, 0u);
}

TEST(ElfFile, RejectsWhatIsNotElf64) {
  std::string error;
  EXPECT_FALSE(ElfFile::parse({}, &error));
  EXPECT_FALSE(error.empty());
  std::vector<std::byte> text(4096, std::byte{'x'});
  EXPECT_FALSE(ElfFile::parse(text, &error));
  std::vector<std::byte> elf32(sizeof(Elf64_Ehdr), std::byte{0});
  std::memcpy(elf32.data(), ELFMAG, SELFMAG);
  elf32[EI_CLASS] = std::byte{ELFCLASS32};
  elf32[EI_DATA] = std::byte{ELFDATA2LSB};
  EXPECT_FALSE(ElfFile::parse(elf32, &error));
  EXPECT_NE(error.find("64-bit"), std::string::npos);
}

TEST(GnuHash, KnownValues) {
  // Values from the GNU hash definition (h = h * 33 + c, from 5381).
  EXPECT_EQ(gnu_hash(""), 5381u);
  EXPECT_EQ(gnu_hash("a"), 5381u * 33 + 'a');
  EXPECT_EQ(gnu_hash("printf"), 0x156b2bb8u);
}

// Whatever parse accepts, every query must stay inside the bytes.
void exercise(std::span<const std::byte> bytes) {
  auto elf = ElfFile::parse(bytes);
  if (!elf) return;
  (void)elf->soname();
  (void)elf->first_load_segment();
  for (const char* name : {"dlopen", "_PyRuntime", "Py_Version", "gilstat_test_entry"}) {
    if (auto sym = elf->find_symbol(name)) {
      (void)elf->bytes_at_vaddr(sym->value, 64);
      (void)elf->cstring_at_vaddr(sym->value, 64);
    }
    (void)elf->find_dynamic_symbol(name, "GLIBC_2.34");
  }
  for (const Section& s : elf->sections()) (void)elf->section_bytes(s);
  size_t n = 0;
  elf->for_each_symbol(SymbolTable::kDynamic, [&](const Symbol&) { return ++n < 100000; });
  elf->for_each_symbol(SymbolTable::kStatic, [&](const Symbol&) { return ++n < 200000; });
}

TEST(ElfFile, TruncatedFilesNeverCrash) {
  for (const std::string path : {kLibc, GILSTAT_INJECT_TARGET_LIB}) {
    auto file = FileBytes::open(path);
    ASSERT_TRUE(file) << path;
    const auto all = file->bytes();
    std::vector<size_t> lengths = {0, 1, 4, 16, 63, 64, 65, 120, 1000, 4096};
    std::mt19937_64 random(42);
    for (int i = 0; i < 200; ++i) lengths.push_back(random() % all.size());
    lengths.push_back(all.size() - 1);
    for (size_t length : lengths) {
      // A heap copy of exactly `length` bytes, so an overread is an ASan error.
      std::vector<std::byte> copy(all.begin(), all.begin() + length);
      exercise(copy);
    }
  }
}

TEST(ElfFile, CorruptedFilesNeverCrash) {
  auto file = FileBytes::open(GILSTAT_INJECT_TARGET_LIB);
  ASSERT_TRUE(file);
  const auto original = file->bytes();
  std::mt19937_64 random(7);
  auto header = ElfFile::parse(original);
  ASSERT_TRUE(header);
  // Aim most damage at the tables the parser trusts least.
  std::vector<std::pair<uint64_t, uint64_t>> targets = {{0, sizeof(Elf64_Ehdr)}};
  for (const Section& s : header->sections()) {
    if (s.type == SHT_DYNSYM || s.type == SHT_GNU_HASH || s.type == SHT_GNU_versym ||
        s.type == SHT_GNU_verdef || s.type == SHT_DYNAMIC || s.type == SHT_STRTAB) {
      targets.push_back({s.offset, s.size});
    }
  }
  std::vector<std::byte> copy(original.begin(), original.end());
  for (int round = 0; round < 3000; ++round) {
    std::copy(original.begin(), original.end(), copy.begin());
    const int flips = 1 + random() % 16;
    for (int i = 0; i < flips; ++i) {
      uint64_t at;
      if (random() % 4 == 0) {
        at = random() % copy.size();
      } else {
        auto [offset, size] = targets[random() % targets.size()];
        at = size ? offset + random() % size : offset;
      }
      if (at < copy.size()) copy[at] = static_cast<std::byte>(random());
    }
    // Section header table entries too.
    auto shoff = *ByteView(copy).read<uint64_t>(offsetof(Elf64_Ehdr, e_shoff));
    if (random() % 2 && shoff < copy.size()) {
      copy[shoff + random() % std::min<uint64_t>(copy.size() - shoff, 64 * 30)] =
          static_cast<std::byte>(random());
    }
    exercise(copy);
  }
}

TEST(ElfFile, RandomBytesWithAnElfHeaderNeverCrash) {
  std::mt19937_64 random(99);
  for (int round = 0; round < 2000; ++round) {
    std::vector<std::byte> bytes(64 + random() % 8192);
    for (auto& b : bytes) b = static_cast<std::byte>(random());
    std::memcpy(bytes.data(), ELFMAG, SELFMAG);
    bytes[EI_CLASS] = std::byte{ELFCLASS64};
    bytes[EI_DATA] = std::byte{ELFDATA2LSB};
    // Keep the tables small and inside the file half of the time.
    if (round % 2) {
      Elf64_Ehdr h;
      std::memcpy(&h, bytes.data(), sizeof(h));
      h.e_phoff = 64;
      h.e_phnum = random() % 4;
      h.e_phentsize = sizeof(Elf64_Phdr);
      h.e_shoff = 64 + random() % (bytes.size() - 64);
      h.e_shnum = random() % 12;
      h.e_shentsize = sizeof(Elf64_Shdr);
      h.e_shstrndx = random() % 12;
      std::memcpy(bytes.data(), &h, sizeof(h));
    }
    exercise(bytes);
  }
}

}  // namespace
}  // namespace gilstat::elf

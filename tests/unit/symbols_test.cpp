// The symboliser's tables on real files of this machine: a symbol covers an
// address only within its size, a stripped executable keeps its unnamed code
// unnamed, separate debug files are used only when their build-id or CRC
// matches.  Files that are not installed here skip with the reason.
#include <elf.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <span>
#include <string>
#include <vector>

#include "symbols/object_symbols.hpp"
#include "symbols/symbolizer.hpp"

namespace gilstat::symbols {
namespace {

constexpr const char* kLibc = "/lib/x86_64-linux-gnu/libc.so.6";
constexpr const char* kLibPython312 = "/root/.pyenv/versions/3.12.1/lib/libpython3.12.so.1.0";
constexpr const char* kDebianPython311 = "/usr/bin/python3.11";

#define REQUIRE_FILE(path)                                                            \
  do {                                                                                \
    if (access(path, R_OK) != 0) GTEST_SKIP() << (path) << " is not on this machine"; \
  } while (0)

std::unique_ptr<ObjectSymbols> open_or_fail(const std::string& path, DebugSearch search = {}) {
  std::string why;
  auto object = ObjectSymbols::open_file(path, std::move(search), &why);
  EXPECT_TRUE(object) << why;
  return object;
}

std::string name_at(ObjectSymbols& object, uint64_t vaddr) {
  auto hit = object.lookup(vaddr);
  return hit ? std::string(hit->name) : std::string("(none)");
}

TEST(ObjectSymbols, ASymbolCoversExactlyItsSize) {
  REQUIRE_FILE(kLibPython312);
  auto python = open_or_fail(kLibPython312);
  ASSERT_TRUE(python);
  EXPECT_EQ(python->source(), SymbolSource::kSymtab);
  EXPECT_EQ(python->build_id().size(), 40u);
  auto eval = python->elf()->find_symbol("_PyEval_EvalFrameDefault");
  ASSERT_TRUE(eval && eval->size > 0);
  EXPECT_EQ(name_at(*python, eval->value), "_PyEval_EvalFrameDefault");
  EXPECT_EQ(name_at(*python, eval->value + eval->size - 1), "_PyEval_EvalFrameDefault");
  // One byte past its end is not it (whatever follows, or nothing).
  EXPECT_NE(name_at(*python, eval->value + eval->size), "_PyEval_EvalFrameDefault");
  // A static function: only .symtab knows it.
  auto cfunction_call = python->elf()->find_static_symbol("cfunction_call");
  ASSERT_TRUE(cfunction_call);
  EXPECT_EQ(name_at(*python, cfunction_call->value + 4), "cfunction_call");
}

// Debian's python3.11 is stripped (non-PIE, libpython linked in): only its
// exported functions have symbols.  An address just past one of them, in
// code no symbol covers, stays unnamed instead of taking the name before it.
TEST(ObjectSymbols, StrippedExecutableLeavesUncoveredCodeUnnamed) {
  REQUIRE_FILE(kDebianPython311);
  auto python = open_or_fail(kDebianPython311);
  ASSERT_TRUE(python);
  if (python->source() == SymbolSource::kDebugFile) {
    GTEST_SKIP() << "python3.11's debug file is installed (" << python->debug_file_path() << ")";
  }
  EXPECT_EQ(python->source(), SymbolSource::kDynsym);
  EXPECT_EQ(python->elf()->type(), ET_EXEC);
  auto text = python->elf()->section(".text");
  ASSERT_TRUE(text);
  std::vector<elf::Symbol> functions;
  python->elf()->for_each_symbol(elf::SymbolTable::kDynamic, [&](const elf::Symbol& s) {
    if (s.type == STT_FUNC && s.size > 0 && s.section != SHN_UNDEF) functions.push_back(s);
    return true;
  });
  std::sort(functions.begin(), functions.end(),
            [](const auto& a, const auto& b) { return a.value < b.value; });
  int gaps = 0;
  for (size_t i = 0; i + 1 < functions.size() && gaps < 50; ++i) {
    const uint64_t end = functions[i].value + functions[i].size;
    if (end >= functions[i + 1].value || end < text->addr || end >= text->addr + text->size) {
      continue;
    }
    ++gaps;
    EXPECT_EQ(name_at(*python, end - 1), functions[i].name);
    EXPECT_EQ(name_at(*python, end), "(none)") << "just past " << functions[i].name;
  }
  EXPECT_EQ(gaps, 50) << "expected unexported code between exported functions";
  Location where;
  where.object = kDebianPython311;
  where.object_vaddr = 0x52b0f0;
  EXPECT_EQ(where.to_string(), "python3.11+0x52b0f0");
}

// libc has only .dynsym; libc6-dbg puts its full table under
// /usr/lib/debug/.build-id.
TEST(ObjectSymbols, LibcInternalsComeFromItsBuildIdDebugFile) {
  REQUIRE_FILE(kLibc);
  auto libc = open_or_fail(kLibc);
  ASSERT_TRUE(libc);
  const std::string id = libc->build_id();
  ASSERT_EQ(id.size(), 40u);
  const std::string debug =
      "/usr/lib/debug/.build-id/" + id.substr(0, 2) + "/" + id.substr(2) + ".debug";
  if (access(debug.c_str(), R_OK) != 0) GTEST_SKIP() << "no " << debug << " (libc6-dbg)";
  EXPECT_EQ(libc->source(), SymbolSource::kDebugFile);
  EXPECT_EQ(libc->debug_file_path(), debug);
  auto full = open_or_fail(debug);
  auto int_malloc = full->elf()->find_static_symbol("_int_malloc");
  ASSERT_TRUE(int_malloc && int_malloc->size > 0);
  EXPECT_FALSE(libc->elf()->find_dynamic_symbol("_int_malloc"));
  EXPECT_EQ(name_at(*libc, int_malloc->value + 1), "_int_malloc");
  EXPECT_NE(name_at(*libc, int_malloc->value + int_malloc->size), "_int_malloc");

  // Without the debug directory: .dynsym, which has no symbol there.
  auto bare = open_or_fail(kLibc, DebugSearch{{}, {}});
  EXPECT_EQ(bare->source(), SymbolSource::kDynsym);
  EXPECT_EQ(name_at(*bare, int_malloc->value + 1), "(none)");
}

class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/gilstat-symbols-test-XXXXXX";
    if (mkdtemp(pattern)) path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::vector<char> slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void spit(const std::string& path, const std::vector<char>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A copy of the demo extension split with objcopy into a stripped object and
// its debug file: the link is followed when the CRC matches, the build-id
// directory when the build-id matches, neither otherwise.
TEST(ObjectSymbols, SeparateDebugFilesAreVerified) {
  if (std::system("objcopy --version >/dev/null 2>&1") != 0) GTEST_SKIP() << "no objcopy";
  const std::string module = GILSTAT_DEMO_MODULE;
  REQUIRE_FILE(module.c_str());
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  const std::string debug = dir.path() + "/demo.debug", stripped = dir.path() + "/demo.so";
  ASSERT_EQ(std::system(("objcopy --only-keep-debug '" + module + "' '" + debug + "'").c_str()), 0);
  ASSERT_EQ(std::system(("objcopy --strip-all --add-gnu-debuglink='" + debug + "' '" + module +
                         "' '" + stripped + "'")
                            .c_str()),
            0);
  auto original = open_or_fail(module);
  ASSERT_EQ(original->source(), SymbolSource::kSymtab);
  std::optional<elf::Symbol> hold_for;
  original->elf()->for_each_symbol(elf::SymbolTable::kStatic, [&](const elf::Symbol& s) {
    if (s.type == STT_FUNC && demangle(s.name).find("hold_for(") != std::string::npos) hold_for = s;
    return !hold_for;
  });
  ASSERT_TRUE(hold_for);
  const DebugSearch no_roots{{}, {}};

  auto linked = open_or_fail(stripped, no_roots);
  EXPECT_EQ(linked->source(), SymbolSource::kDebugFile);
  EXPECT_EQ(linked->debug_file_path(), debug);
  EXPECT_EQ(demangle(name_at(*linked, hold_for->value + 1)),
            "(anonymous namespace)::hold_for(_object*, _object*)");

  // Through the build-id directory, the link's file gone.
  const std::string id = linked->build_id();
  ASSERT_EQ(id.size(), 40u);
  const std::string by_id_dir = dir.path() + "/root/.build-id/" + id.substr(0, 2);
  std::filesystem::create_directories(by_id_dir);
  const std::string by_id = by_id_dir + "/" + id.substr(2) + ".debug";
  std::filesystem::rename(debug, by_id);
  auto found_by_id = open_or_fail(stripped, DebugSearch{{dir.path() + "/root"}, {}});
  EXPECT_EQ(found_by_id->source(), SymbolSource::kDebugFile);
  EXPECT_EQ(found_by_id->debug_file_path(), by_id);

  // A different build-id in that file: refused.  The same bytes under the
  // link's name with one byte more: the CRC differs, refused.
  std::vector<char> bytes = slurp(by_id);
  std::vector<char> id_bytes;
  for (size_t i = 0; i < id.size(); i += 2) {
    id_bytes.push_back(static_cast<char>(std::stoi(id.substr(i, 2), nullptr, 16)));
  }
  auto at = std::search(bytes.begin(), bytes.end(), id_bytes.begin(), id_bytes.end());
  ASSERT_NE(at, bytes.end());
  *at = static_cast<char>(*at ^ 0x5a);
  spit(by_id, bytes);
  *at = static_cast<char>(*at ^ 0x5a);
  bytes.push_back('\0');
  spit(debug, bytes);
  auto refused = open_or_fail(stripped, DebugSearch{{dir.path() + "/root"}, {}});
  EXPECT_EQ(refused->source(), SymbolSource::kDynsym);  // PyInit__gilstat_demo only
  EXPECT_EQ(name_at(*refused, hold_for->value + 1), "(none)");
}

// The build-id note is read from untrusted bytes: sizes that run past the
// note or the file give no build-id, never a read outside the file.
TEST(ObjectSymbols, ACorruptBuildIdNoteGivesNoBuildId) {
  const std::string module = GILSTAT_DEMO_MODULE;
  REQUIRE_FILE(module.c_str());
  const std::vector<char> original = slurp(module);
  auto elf = elf::ElfFile::parse(std::as_bytes(std::span(original)));
  ASSERT_TRUE(elf && elf->build_id());
  // The note's header: namesz 4, descsz 20, type NT_GNU_BUILD_ID, "GNU\0".
  const uint32_t header[3] = {4, 20, NT_GNU_BUILD_ID};
  std::vector<char> pattern(reinterpret_cast<const char*>(header),
                            reinterpret_cast<const char*>(header) + sizeof(header));
  pattern.insert(pattern.end(), {'G', 'N', 'U', '\0'});
  const auto at = std::search(original.begin(), original.end(), pattern.begin(), pattern.end());
  ASSERT_NE(at, original.end());
  const size_t offset = at - original.begin();
  for (const uint32_t bad : {0xffffffffu, 0xfffffff0u, 0x10000u}) {
    for (const size_t field : {size_t{0}, size_t{4}}) {  // namesz, descsz
      std::vector<char> bytes = original;
      std::memcpy(bytes.data() + offset + field, &bad, sizeof(bad));
      auto corrupt = elf::ElfFile::parse(std::as_bytes(std::span(bytes)));
      ASSERT_TRUE(corrupt);
      EXPECT_FALSE(corrupt->build_id()) << "field " << field << " = " << bad;
    }
  }
}

TEST(Demangle, CppNamesOnly) {
  EXPECT_EQ(demangle("_ZN7gilstat4demo10spin_untilEm"), "gilstat::demo::spin_until(unsigned long)");
  EXPECT_EQ(demangle("PyObject_Call"), "PyObject_Call");
  EXPECT_EQ(demangle("_Znot_valid"), "_Znot_valid");
}

TEST(Location, FormsOfAName) {
  Location where;
  where.address = attach::RemoteAddr(0x7f0012345678);
  EXPECT_EQ(where.to_string(), "0x7f0012345678 (anonymous memory)");
  where.object = "/usr/lib/libx.so";
  where.file_offset = 0x1234;
  EXPECT_EQ(where.to_string(), "libx.so (file offset 0x1234)");
  where.object_vaddr = 0x2234;
  EXPECT_EQ(where.to_string(), "libx.so+0x2234");
  where.function = "f";
  where.function_offset = 0x1a;
  EXPECT_EQ(where.to_string(), "f+0x1a (libx.so)");
}

}  // namespace
}  // namespace gilstat::symbols

#include "symbols/object_symbols.hpp"

#include <cxxabi.h>
#include <elf.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>

namespace gilstat::symbols {

namespace {

// Among aliases of one function (same start and size) the name shown: a
// global one before a weak one before a local one, then the one with fewer
// leading underscores (`read` rather than `__libc_read`).
int alias_rank(const elf::Symbol& sym) {
  const int binding = sym.binding == STB_GLOBAL ? 0 : sym.binding == STB_WEAK ? 1 : 2;
  const size_t underscores = std::min<size_t>(sym.name.find_first_not_of('_'), 7);
  return binding * 16 + static_cast<int>(underscores);
}

}  // namespace

std::string_view to_string(SymbolSource source) {
  switch (source) {
    case SymbolSource::kSymtab:
      return "symtab";
    case SymbolSource::kDebugFile:
      return "debug file";
    case SymbolSource::kDynsym:
      return "dynsym";
    case SymbolSource::kNone:
      break;
  }
  return "none";
}

ObjectSymbols::ObjectSymbols(std::string path, elf::FileBytes file, elf::ElfFile elf,
                             DebugSearch search)
    : path_(std::move(path)),
      file_(std::move(file)),
      elf_(std::move(elf)),
      search_(std::move(search)) {
  if (auto id = elf_->build_id()) build_id_ = elf::to_hex(*id);
}

ObjectSymbols::ObjectSymbols(std::string path, std::vector<std::byte> image)
    : path_(std::move(path)), image_(std::move(image)) {
  elf_ = elf::ElfFile::parse(image_);
  if (elf_) {
    if (auto id = elf_->build_id()) build_id_ = elf::to_hex(*id);
  }
  search_.debug_roots.clear();  // an image in memory has no debug file
}

std::unique_ptr<ObjectSymbols> ObjectSymbols::open_file(const std::string& path, DebugSearch search,
                                                        std::string* why) {
  int error_number = 0;
  auto file = elf::FileBytes::open(path, &error_number);
  if (!file) {
    if (why) *why = std::string("cannot open ") + path + ": " + std::strerror(error_number);
    return nullptr;
  }
  std::string error;
  auto elf = elf::ElfFile::parse(file->bytes(), &error);
  if (!elf) {
    if (why) *why = path + ": " + error;
    return nullptr;
  }
  return std::make_unique<ObjectSymbols>(path, std::move(*file), std::move(*elf),
                                         std::move(search));
}

void ObjectSymbols::take_functions(const elf::ElfFile& elf, elf::SymbolTable table) {
  struct Candidate {
    Entry entry;
    int rank;
  };
  std::vector<Candidate> found;
  elf.for_each_symbol(table, [&](const elf::Symbol& sym) {
    const bool function = sym.type == STT_FUNC || sym.type == STT_GNU_IFUNC;
    if (!function || sym.section == SHN_UNDEF || sym.name.empty()) return true;
    const uint64_t end = sym.size == 0 ? sym.value + 1 : sym.value + sym.size;
    if (end <= sym.value) return true;  // wraps: a corrupt entry
    // Debug files' tables spell versioned aliases "clock_gettime@@GLIBC_2.17":
    // shown by the name, ranked after the plain alias.
    const size_t at = sym.name.find('@');
    const std::string_view name = at == 0 ? sym.name : sym.name.substr(0, at);
    const int rank = alias_rank(sym) + (at == std::string_view::npos ? 0 : 8);
    found.push_back({Entry{sym.value, end, name, sym.size == 0}, rank});
    return found.size() < kMaxSymbols;
  });
  std::sort(found.begin(), found.end(), [](const Candidate& a, const Candidate& b) {
    if (a.entry.start != b.entry.start) return a.entry.start < b.entry.start;
    if (a.entry.end != b.entry.end) return a.entry.end > b.entry.end;  // outer first
    return a.rank < b.rank;
  });
  entries_.clear();
  for (const Candidate& c : found) {
    // Aliases: the first of a run with the same extent has the best rank.
    if (!entries_.empty() && entries_.back().start == c.entry.start &&
        entries_.back().end == c.entry.end) {
      continue;
    }
    entries_.push_back(c.entry);
  }
  max_end_.resize(entries_.size());
  uint64_t max_end = 0;
  for (size_t i = 0; i < entries_.size(); ++i) {
    max_end = std::max(max_end, entries_[i].end);
    max_end_[i] = max_end;
  }
}

void ObjectSymbols::load() {
  if (loaded_) return;
  loaded_ = true;
  if (!elf_) return;
  take_functions(*elf_, elf::SymbolTable::kStatic);
  if (!entries_.empty()) {
    source_ = SymbolSource::kSymtab;
    return;
  }
  debug_ = find_debug_file(*elf_, path_, search_);
  if (debug_) {
    take_functions(debug_->elf, elf::SymbolTable::kStatic);
    if (!entries_.empty()) {
      source_ = SymbolSource::kDebugFile;
      return;
    }
    debug_.reset();
  }
  take_functions(*elf_, elf::SymbolTable::kDynamic);
  if (!entries_.empty()) source_ = SymbolSource::kDynsym;
}

std::optional<SymbolHit> ObjectSymbols::lookup(uint64_t vaddr) {
  load();
  auto it = std::upper_bound(entries_.begin(), entries_.end(), vaddr,
                             [](uint64_t v, const Entry& e) { return v < e.start; });
  // Walk back through the symbols starting at or below vaddr while one of
  // them may still reach it; the first that covers it is the innermost.
  for (size_t i = it - entries_.begin(); i-- > 0 && max_end_[i] > vaddr;) {
    const Entry& e = entries_[i];
    const bool covers = e.exact_only ? vaddr == e.start : vaddr < e.end;
    if (covers) return SymbolHit{e.name, e.start, e.exact_only ? 0 : e.end - e.start};
  }
  return std::nullopt;
}

SymbolSource ObjectSymbols::source() {
  load();
  return source_;
}

const std::string& ObjectSymbols::debug_file_path() {
  load();
  static const std::string kNone;
  return debug_ ? debug_->path : kNone;
}

size_t ObjectSymbols::symbol_count() {
  load();
  return entries_.size();
}

std::string demangle(std::string_view name) {
  if (!name.starts_with("_Z")) return std::string(name);
  const std::string mangled(name);
  int status = 0;
  char* text = abi::__cxa_demangle(mangled.c_str(), nullptr, nullptr, &status);
  if (status != 0 || !text) return mangled;
  std::string result(text);
  std::free(text);
  return result;
}

}  // namespace gilstat::symbols

#include "symbols/debug_file.hpp"

#include <elf.h>

#include <algorithm>

namespace gilstat::symbols {

namespace {

// The ELF at `path` (under the prefix first), parsed.
std::optional<DebugFile> open_candidate(const std::string& path, const DebugSearch& search) {
  std::vector<std::string> tries;
  if (!search.path_prefix.empty()) tries.push_back(search.path_prefix + path);
  tries.push_back(path);
  for (const std::string& local : tries) {
    auto file = elf::FileBytes::open(local);
    if (!file) continue;
    auto elf = elf::ElfFile::parse(file->bytes());
    if (!elf) continue;
    return DebugFile{local, std::move(*file), std::move(*elf)};
  }
  return std::nullopt;
}

bool has_symtab(const elf::ElfFile& elf) {
  return std::any_of(elf.sections().begin(), elf.sections().end(),
                     [](const elf::Section& s) { return s.type == SHT_SYMTAB; });
}

std::optional<DebugFile> by_build_id(const elf::ElfFile& object, const DebugSearch& search) {
  auto id = object.build_id();
  if (!id || id->size() < 2) return std::nullopt;
  const std::string hex = elf::to_hex(*id);
  for (const std::string& root : search.debug_roots) {
    const std::string path =
        root + "/.build-id/" + hex.substr(0, 2) + "/" + hex.substr(2) + ".debug";
    auto candidate = open_candidate(path, search);
    if (!candidate) continue;
    auto candidate_id = candidate->elf.build_id();
    if (candidate_id &&
        std::equal(candidate_id->begin(), candidate_id->end(), id->begin(), id->end())) {
      return candidate;
    }
  }
  return std::nullopt;
}

std::optional<DebugFile> by_debug_link(const elf::ElfFile& object, const std::string& object_path,
                                       const DebugSearch& search) {
  auto link = object.debug_link();
  // The name comes from the object, which the target may have made up: a
  // plain file name only, never a path elsewhere.
  if (!link || link->name.find('/') != std::string_view::npos || link->name == "." ||
      link->name == "..") {
    return std::nullopt;
  }
  const size_t slash = object_path.rfind('/');
  if (object_path.empty() || object_path.front() != '/' || slash == std::string::npos) {
    return std::nullopt;
  }
  const std::string dir = object_path.substr(0, slash);
  const std::string name(link->name);
  std::vector<std::string> paths = {dir + "/" + name, dir + "/.debug/" + name};
  for (const std::string& root : search.debug_roots) paths.push_back(root + dir + "/" + name);
  for (const std::string& path : paths) {
    if (path == object_path) continue;
    auto candidate = open_candidate(path, search);
    if (candidate && elf::debuglink_crc32(candidate->file.bytes()) == link->crc) return candidate;
  }
  return std::nullopt;
}

}  // namespace

std::optional<DebugFile> find_debug_file(const elf::ElfFile& object, const std::string& object_path,
                                         const DebugSearch& search) {
  auto found = by_build_id(object, search);
  if (!found) found = by_debug_link(object, object_path, search);
  if (found && !has_symtab(found->elf)) return std::nullopt;
  return found;
}

}  // namespace gilstat::symbols

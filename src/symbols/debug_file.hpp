// Separate debug files: where a stripped object's full symbol table lives.
//
// Searched as gdb does, each candidate verified before it is trusted:
//  1. by build-id: ROOT/.build-id/xx/yyyy.debug (xx = the build-id's first
//     byte in hex, yyyy the rest); its own build-id must be the object's;
//  2. by .gnu_debuglink NAME: next to the object (DIR/NAME), in DIR/.debug/NAME
//     and ROOT/DIR/NAME; the CRC-32 of its whole contents must be the one the
//     link records.
// ROOT is each of `debug_roots` (default /usr/lib/debug).  Each absolute path
// is tried under `path_prefix` first (the target's root, /proc/PID/root, when
// it runs in another mount namespace), then as is.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "elf/elf_file.hpp"
#include "elf/file_bytes.hpp"

namespace gilstat::symbols {

struct DebugSearch {
  std::vector<std::string> debug_roots = {"/usr/lib/debug"};
  std::string path_prefix;
};

struct DebugFile {
  std::string path;  // as opened
  elf::FileBytes file;
  elf::ElfFile elf;
};

// The verified debug file of `object`, which the target names `object_path`;
// nullopt when none is found.
std::optional<DebugFile> find_debug_file(const elf::ElfFile& object, const std::string& object_path,
                                         const DebugSearch& search);

}  // namespace gilstat::symbols

// Names for code addresses of another process, worked out in the CLI (never
// in the target): which mapped object holds the address (/proc/PID/maps), its
// load bias and build-id, and the function symbol covering it
// (object_symbols.hpp says which table and why a symbol must cover the
// address).  The vDSO is read from the target's memory.
//
// An address no symbol covers is shown as `object+0xVADDR`: the object's
// basename and the address in the object's own ELF address space (p_vaddr
// based, what `addr2line -e object 0xVADDR` and `nm` use; for a non-PIE
// executable that is the run-time address itself).  When the object cannot be
// read at all: `object (file offset 0xOFFSET)`.
//
// Objects are cached by path and build-id (a file replaced on disk under the
// same path has another build-id), their tables built on first use; at most
// `max_objects` objects are kept.  Not thread-safe: one Symbolizer per thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "attach/process_maps.hpp"
#include "attach/remote_memory.hpp"
#include "attach/stop_point.hpp"
#include "symbols/object_symbols.hpp"

namespace gilstat::symbols {

struct Location {
  attach::RemoteAddr address;
  std::string object;    // the mapping's path in the target, "[vdso]"; "" for anonymous memory
  std::string build_id;  // hex, "" when unknown
  std::optional<uint64_t> object_vaddr;  // the address in the object's ELF address space
  std::optional<uint64_t> file_offset;   // for a file mapping: the offset in the file
  std::string function;                  // demangled; "" when no symbol covers the address
  uint64_t function_offset = 0;
  SymbolSource source = SymbolSource::kNone;

  // "function+0x1a (libc.so.6)", "python3.11+0x5a1b2c",
  // "libx.so (file offset 0x1234)", "0x7f0012345678 (anonymous memory)".
  std::string to_string() const;
  std::string object_basename() const;
};

class Symbolizer {
 public:
  explicit Symbolizer(DebugSearch search = {}, size_t max_objects = 128);

  // Where `address` of process `pid` lies.  The process's maps are read on
  // first use and again when an address is in none of them.  Throws
  // gilstat::Error only when the maps of a process never seen cannot be read.
  Location locate(pid_t pid, attach::RemoteAddr address);
  // A stack frame: attributed by its lookup_pc() (a return address belongs
  // to the call before it), offsets given for its pc.
  Location locate(pid_t pid, const attach::StackFrame& frame);
  std::string describe(pid_t pid, attach::RemoteAddr address) {
    return locate(pid, address).to_string();
  }
  // Names `pid`'s addresses with these maps (those its stacks were taken
  // with) until an address is in none of them.
  void use_maps(pid_t pid, attach::ProcessMaps maps);
  // Drops what is known of a process (its maps; the objects stay cached).
  void forget(pid_t pid) { processes_.erase(pid); }

 private:
  struct Loaded {
    std::shared_ptr<ObjectSymbols> symbols;
    uint64_t bias = 0;
  };
  struct Process {
    attach::ProcessMaps maps;
    // By mapping path; nullopt when the object could not be read.
    std::map<std::string, std::optional<Loaded>> objects;
    uint64_t last_used = 0;
  };

  Process& process(pid_t pid, std::optional<attach::ProcessMaps> maps = std::nullopt);
  const std::optional<Loaded>& object(pid_t pid, Process& process, const attach::MapEntry& entry);
  std::optional<Loaded> load_file(pid_t pid, const Process& process, const attach::MapEntry& entry);
  std::optional<Loaded> load_vdso(pid_t pid, const attach::MapEntry& entry);
  // The cached object under `key`, or `fresh` cached under it.
  std::shared_ptr<ObjectSymbols> intern(const std::string& key,
                                        std::unique_ptr<ObjectSymbols> fresh);

  DebugSearch search_;
  size_t max_objects_;
  uint64_t clock_ = 0;
  std::map<pid_t, Process> processes_;
  std::list<std::pair<std::string, std::shared_ptr<ObjectSymbols>>> cache_;  // most recent first
};

}  // namespace gilstat::symbols

#include "symbols/symbolizer.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "common/error.hpp"
#include "common/procfs.hpp"

namespace gilstat::symbols {

namespace {

// Processes whose maps are kept; the least recently used goes first.
constexpr size_t kMaxProcesses = 16;
// The vDSO is one or two pages; anything larger mapped as [vdso] is not read.
constexpr uint64_t kMaxVdsoBytes = 1u << 20;

}  // namespace

std::string Location::object_basename() const {
  const size_t slash = object.rfind('/');
  return slash == std::string::npos ? object : object.substr(slash + 1);
}

std::string Location::to_string() const {
  if (!function.empty()) {
    return fmt::format("{}+{:#x} ({})", function, function_offset, object_basename());
  }
  if (object.empty()) return fmt::format("{:#x} (anonymous memory)", address.value());
  if (object_vaddr) return fmt::format("{}+{:#x}", object_basename(), *object_vaddr);
  if (file_offset) return fmt::format("{} (file offset {:#x})", object_basename(), *file_offset);
  return fmt::format("{:#x} ({})", address.value(), object);
}

Symbolizer::Symbolizer(DebugSearch search, size_t max_objects)
    : search_(std::move(search)), max_objects_(std::max<size_t>(max_objects, 1)) {}

void Symbolizer::use_maps(pid_t pid, attach::ProcessMaps maps) {
  processes_.erase(pid);
  process(pid, std::move(maps));
}

Symbolizer::Process& Symbolizer::process(pid_t pid, std::optional<attach::ProcessMaps> maps) {
  auto it = processes_.find(pid);
  if (it == processes_.end()) {
    if (processes_.size() >= kMaxProcesses) {
      auto oldest = std::min_element(processes_.begin(), processes_.end(), [](auto& a, auto& b) {
        return a.second.last_used < b.second.last_used;
      });
      processes_.erase(oldest);
    }
    if (!maps) maps = attach::ProcessMaps::read(pid);
    it = processes_.emplace(pid, Process{std::move(*maps), {}, 0}).first;
  }
  it->second.last_used = ++clock_;
  return it->second;
}

std::shared_ptr<ObjectSymbols> Symbolizer::intern(const std::string& key,
                                                  std::unique_ptr<ObjectSymbols> fresh) {
  for (auto it = cache_.begin(); it != cache_.end(); ++it) {
    if (it->first == key) {
      cache_.splice(cache_.begin(), cache_, it);
      return cache_.front().second;
    }
  }
  cache_.emplace_front(key, std::shared_ptr<ObjectSymbols>(std::move(fresh)));
  while (cache_.size() > max_objects_) cache_.pop_back();
  return cache_.front().second;
}

std::optional<Symbolizer::Loaded> Symbolizer::load_file(pid_t pid, const Process& process,
                                                        const attach::MapEntry& entry) {
  auto mapped = attach::open_mapped_object(pid, process.maps, entry.path);
  if (!mapped) return std::nullopt;
  std::string identity;
  if (auto id = mapped->elf.build_id()) {
    identity = elf::to_hex(*id);
  } else {
    identity = fmt::format("dev {} inode {}", mapped->file.device(), mapped->file.inode());
  }
  const std::string key = entry.path + '\n' + identity;
  DebugSearch search = search_;
  search.path_prefix = procfs::path(pid, "root");
  const uint64_t bias = mapped->bias;
  auto fresh = std::make_unique<ObjectSymbols>(entry.path, std::move(mapped->file),
                                               std::move(mapped->elf), std::move(search));
  return Loaded{intern(key, std::move(fresh)), bias};
}

std::optional<Symbolizer::Loaded> Symbolizer::load_vdso(pid_t pid, const attach::MapEntry& entry) {
  const uint64_t size = entry.end - entry.start;
  if (size == 0 || size > kMaxVdsoBytes) return std::nullopt;
  std::vector<std::byte> image(size);
  const attach::LiveRemoteMemory memory(pid);
  if (!memory.read(entry.start, image)) return std::nullopt;
  auto fresh = std::make_unique<ObjectSymbols>(entry.path, std::move(image));
  if (!fresh->elf()) return std::nullopt;
  auto bias = attach::load_bias({&entry}, *fresh->elf());
  if (!bias) return std::nullopt;
  const std::string key = "[vdso]\n" + fresh->build_id();
  return Loaded{intern(key, std::move(fresh)), *bias};
}

const std::optional<Symbolizer::Loaded>& Symbolizer::object(pid_t pid, Process& process,
                                                            const attach::MapEntry& entry) {
  auto it = process.objects.find(entry.path);
  if (it != process.objects.end()) return it->second;
  std::optional<Loaded> loaded =
      entry.path == "[vdso]" ? load_vdso(pid, entry) : load_file(pid, process, entry);
  return process.objects.emplace(entry.path, std::move(loaded)).first->second;
}

Location Symbolizer::locate(pid_t pid, attach::RemoteAddr address) {
  Location where;
  where.address = address;
  Process* p = &process(pid);
  const attach::MapEntry* entry = p->maps.find(address);
  if (!entry) {
    // Mapped since the maps were read (a library loaded later)?  A process
    // that is gone keeps the maps it had.
    try {
      p->maps = attach::ProcessMaps::read(pid);
      p->objects.clear();  // biases may have changed; the symbol tables stay cached
    } catch (const Error&) {
      return where;
    }
    entry = p->maps.find(address);
    if (!entry) return where;
  }
  where.object = entry->path;
  if (entry->is_file()) where.file_offset = address - entry->start + entry->offset;
  if (!entry->is_file() && entry->path != "[vdso]") return where;
  const std::optional<Loaded>& loaded = object(pid, *p, *entry);
  if (!loaded) return where;
  ObjectSymbols& symbols = *loaded->symbols;
  where.build_id = symbols.build_id();
  const uint64_t vaddr = address.value() - loaded->bias;
  where.object_vaddr = vaddr;
  where.source = symbols.source();
  if (auto hit = symbols.lookup(vaddr)) {
    where.function = demangle(hit->name);
    where.function_offset = vaddr - hit->start;
  }
  return where;
}

Location Symbolizer::locate(pid_t pid, const attach::StackFrame& frame) {
  Location where = locate(pid, frame.lookup_pc());
  const uint64_t back = frame.pc - frame.lookup_pc();
  where.address = frame.pc;
  if (where.object_vaddr) *where.object_vaddr += back;
  if (where.file_offset) *where.file_offset += back;
  if (!where.function.empty()) where.function_offset += back;
  return where;
}

}  // namespace gilstat::symbols

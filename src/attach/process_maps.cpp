#include "attach/process_maps.hpp"

#include <elf.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <set>
#include <sstream>

#include "common/error.hpp"
#include "common/procfs.hpp"

namespace gilstat::attach {

namespace {

constexpr uint64_t kPageSize = 4096;  // x86_64; the loader maps at this granularity

// Consumes one hex number from the front of `text`.
std::optional<uint64_t> take_hex(std::string_view& text) {
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value, 16);
  if (ec != std::errc() || end == text.data()) return std::nullopt;
  text.remove_prefix(end - text.data());
  return value;
}

std::optional<uint64_t> take_dec(std::string_view& text) {
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value, 10);
  if (ec != std::errc() || end == text.data()) return std::nullopt;
  text.remove_prefix(end - text.data());
  return value;
}

bool take_char(std::string_view& text, char c) {
  if (text.empty() || text.front() != c) return false;
  text.remove_prefix(1);
  return true;
}

void skip_spaces(std::string_view& text) {
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
}

// One line: "start-end perms offset major:minor inode   path"
std::optional<MapEntry> parse_line(std::string_view line) {
  MapEntry e;
  auto start = take_hex(line);
  if (!start || !take_char(line, '-')) return std::nullopt;
  auto end = take_hex(line);
  if (!end || *end < *start || !take_char(line, ' ')) return std::nullopt;
  if (line.size() < 4) return std::nullopt;
  e.readable = line[0] == 'r';
  e.writable = line[1] == 'w';
  e.executable = line[2] == 'x';
  e.shared = line[3] == 's';
  line.remove_prefix(4);
  if (!take_char(line, ' ')) return std::nullopt;
  auto offset = take_hex(line);
  if (!offset || !take_char(line, ' ')) return std::nullopt;
  auto major = take_hex(line);
  if (!major || !take_char(line, ':')) return std::nullopt;
  auto minor = take_hex(line);
  if (!minor || !take_char(line, ' ')) return std::nullopt;
  auto inode = take_dec(line);
  if (!inode) return std::nullopt;
  skip_spaces(line);
  e.start = RemoteAddr(*start);
  e.end = RemoteAddr(*end);
  e.offset = *offset;
  e.dev_major = static_cast<uint32_t>(*major);
  e.dev_minor = static_cast<uint32_t>(*minor);
  e.inode = *inode;
  constexpr std::string_view kDeleted = " (deleted)";
  if (line.size() > kDeleted.size() && line.ends_with(kDeleted)) {
    line.remove_suffix(kDeleted.size());
    e.deleted = true;
  }
  e.path = std::string(line);
  return e;
}

}  // namespace

std::string_view MapEntry::basename() const {
  std::string_view p = path;
  auto slash = p.rfind('/');
  return slash == std::string_view::npos ? p : p.substr(slash + 1);
}

ProcessMaps ProcessMaps::read(pid_t pid) {
  const std::string file = procfs::path(pid, "maps");
  int e = 0;
  const auto text = procfs::read(file, &e);
  if (!text) {
    if (e == ENOENT) throw Error(fmt::format("no process with pid {}", pid));
    throw Error(fmt::format("cannot read {}: {}", file, std::strerror(e)), {},
                e == EACCES || e == EPERM ? kExitPermission : kExitRuntime);
  }
  return parse(*text);
}

ProcessMaps ProcessMaps::parse(std::string_view text) {
  ProcessMaps maps;
  while (!text.empty()) {
    auto newline = text.find('\n');
    std::string_view line = text.substr(0, newline);
    text.remove_prefix(newline == std::string_view::npos ? text.size() : newline + 1);
    if (auto entry = parse_line(line)) maps.entries_.push_back(std::move(*entry));
  }
  return maps;
}

const MapEntry* ProcessMaps::find(RemoteAddr addr) const {
  for (const MapEntry& e : entries_) {
    if (e.contains(addr)) return &e;
  }
  return nullptr;
}

std::vector<std::string> ProcessMaps::object_paths() const {
  std::vector<std::string> paths;
  std::set<std::string_view> seen;
  for (const MapEntry& e : entries_) {
    if (e.is_file() && seen.insert(e.path).second) paths.push_back(e.path);
  }
  return paths;
}

std::vector<const MapEntry*> ProcessMaps::mappings_of(std::string_view path) const {
  std::vector<const MapEntry*> result;
  for (const MapEntry& e : entries_) {
    if (e.is_file() && e.path == path) result.push_back(&e);
  }
  return result;
}

std::optional<std::string> ProcessMaps::find_object(
    const std::function<bool(std::string_view basename)>& match) const {
  for (const MapEntry& e : entries_) {
    if (e.is_file() && match(e.basename())) return e.path;
  }
  return std::nullopt;
}

bool is_glibc_libc(std::string_view base) {
  return base.starts_with("libc.so") || (base.starts_with("libc-") && base.ends_with(".so"));
}

bool is_musl(std::string_view base) {
  return base.starts_with("ld-musl-") || base.starts_with("libc.musl-");
}

bool is_glibc_loader(std::string_view base) {
  return base.starts_with("ld-linux") || base.starts_with("ld-2.") || base.starts_with("ld.so");
}

std::optional<uint64_t> load_bias(const std::vector<const MapEntry*>& mappings,
                                  const elf::ElfFile& elf) {
  // Any PT_LOAD identifies the bias: it is mapped from the page holding
  // p_offset to the page holding p_vaddr.  Prefer the lowest mapping.
  for (const MapEntry* m : mappings) {
    for (const elf::Segment& s : elf.segments()) {
      if (s.type != PT_LOAD) continue;
      if ((s.offset & ~(kPageSize - 1)) != m->offset) continue;
      return m->start.value() - (s.vaddr & ~(kPageSize - 1));
    }
  }
  return std::nullopt;
}

std::vector<std::string> candidate_local_paths(pid_t pid, const MapEntry& entry) {
  std::vector<std::string> paths;
  paths.push_back(procfs::path(
      pid, fmt::format("map_files/{:x}-{:x}", entry.start.value(), entry.end.value())));
  if (!entry.deleted) {
    paths.push_back(procfs::path(pid, "root") + entry.path);
    paths.push_back(entry.path);
  }
  return paths;
}

std::optional<RemoteAddr> MappedObject::symbol_address(std::string_view name,
                                                       std::string_view version) const {
  auto sym = elf.find_symbol(name, version);
  if (!sym) return std::nullopt;
  return address_of(*sym);
}

std::optional<MappedObject> open_mapped_object(pid_t pid, const ProcessMaps& maps,
                                               const std::string& path, std::string* why) {
  auto fail = [&](std::string text) -> std::optional<MappedObject> {
    if (why) *why = std::move(text);
    return std::nullopt;
  };
  auto mappings = maps.mappings_of(path);
  if (mappings.empty()) return fail(fmt::format("{} is not mapped", path));
  std::string tried;
  for (const std::string& local : candidate_local_paths(pid, *mappings.front())) {
    int error_number = 0;
    auto file = elf::FileBytes::open(local, &error_number);
    if (!file) {
      tried +=
          fmt::format("{}{}: {}", tried.empty() ? "" : "; ", local, std::strerror(error_number));
      continue;
    }
    std::string parse_error;
    auto elf = elf::ElfFile::parse(file->bytes(), &parse_error);
    if (!elf) return fail(fmt::format("{}: {}", local, parse_error));
    auto bias = load_bias(mappings, *elf);
    if (!bias) return fail(fmt::format("{}: no PT_LOAD matches its mappings", local));
    return MappedObject{path, local, std::move(*file), std::move(*elf), *bias};
  }
  return fail(fmt::format("cannot open {} ({})", path, tried));
}

}  // namespace gilstat::attach

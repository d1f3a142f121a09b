// Python objects of another process, read through RemoteMemory: strings,
// bytes, code objects and an instance's attribute.  Everything read is the
// target's data, written while we read it: every size and count is bounded
// before it is used, every pointer is only ever passed back to
// RemoteMemory::read (never dereferenced here), and a value that cannot be
// right gives nullopt.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "attach/remote_memory.hpp"
#include "gilstat/cpython_objects.hpp"

namespace gilstat::pyruntime {

using attach::RemoteAddr;

// Bounds on what one object may make us read.
inline constexpr uint64_t kMaxStringChars = 4096;
inline constexpr uint64_t kMaxBytes = 1u << 20;  // a line table
inline constexpr uint64_t kMaxDictEntries = 4096;
inline constexpr uint64_t kMaxIndexBytes = 1u << 22;

struct CodeInfo {
  std::string function;  // co_qualname (3.11+) or co_name
  std::string file;
  int first_line = 0;
  uint64_t code_units = 0;  // ob_size of the code object (3.11+)
  std::vector<std::byte> line_table;
  // The objects it was read from: a cached entry stands while the code
  // object at its address still points at these and has the same first line.
  uint64_t name_at = 0, file_at = 0, table_at = 0;
};

// Fields of one object read in one system call: the bytes from the lowest
// to the highest offset asked for (each process_vm_readv costs microseconds,
// more with LSM hooks on ptrace access; a profile sample reads a few fields
// of every frame).  A field outside what was read is read on its own.
class FieldBlock {
 public:
  static constexpr uint32_t kMaxSpan = 512;
  // Reads [base + lo, base + hi); false when that cannot be read.  A span
  // longer than kMaxSpan reads nothing now (every get() reads its field).
  bool read(const attach::RemoteMemory& memory, RemoteAddr base, uint32_t lo, uint32_t hi);
  template <class T>
  std::optional<T> get(uint32_t offset) const {
    static_assert(std::is_trivially_copyable_v<T>);
    if (offset >= lo_ && offset - lo_ + sizeof(T) <= size_) {
      T value;
      std::memcpy(&value, bytes_.data() + (offset - lo_), sizeof(T));
      return value;
    }
    return memory_->read_value<T>(base_ + offset);
  }
  // An object pointer: null or 8-aligned, else nullopt.
  std::optional<RemoteAddr> ptr(uint32_t offset) const {
    auto v = get<uint64_t>(offset);
    if (!v || (*v & 7)) return std::nullopt;
    return RemoteAddr(*v);
  }

 private:
  const attach::RemoteMemory* memory_ = nullptr;
  RemoteAddr base_{0};
  uint32_t lo_ = 0, size_ = 0;
  std::array<std::byte, kMaxSpan> bytes_;
};

class ObjectReader {
 public:
  ObjectReader(const attach::RemoteMemory& memory, const cpython::ObjectLayout& layout, int minor)
      : memory_(memory), l_(layout), minor_(minor) {}

  std::optional<uint64_t> u64(RemoteAddr at) const { return memory_.read_value<uint64_t>(at); }
  std::optional<RemoteAddr> ptr(RemoteAddr at) const;  // null, or 8-aligned
  // The name of the object's type, when the type reads as one (cached).
  std::optional<std::string> type_name(RemoteAddr object);
  bool is_type(RemoteAddr object, const char* name);
  // A str as UTF-8 (compact ASCII and compact UCS1/2/4), at most `max_chars`.
  std::optional<std::string> str(RemoteAddr object, uint64_t max_chars = kMaxStringChars);
  std::optional<std::vector<std::byte>> bytes(RemoteAddr object, uint64_t max = kMaxBytes);
  // A code object's names and line table (cached per address for this reader).
  const CodeInfo* code(RemoteAddr object);
  // obj.<name> when it is in the instance's attributes (not the class's).
  std::optional<RemoteAddr> instance_attribute(RemoteAddr object, const std::string& name);

  const cpython::ObjectLayout& layout() const { return l_; }
  const attach::RemoteMemory& memory() const { return memory_; }

 private:
  std::optional<RemoteAddr> dict_item(RemoteAddr dict, const std::string& key);
  // Looks `key` up in a keys object: the value of a combined table, or the
  // matching slot of `values` (an array of pointers) for a split one.
  std::optional<RemoteAddr> keys_item(RemoteAddr keys, std::optional<RemoteAddr> values,
                                      const std::string& key);

  const attach::RemoteMemory& memory_;
  const cpython::ObjectLayout& l_;
  int minor_;
  std::map<uint64_t, std::string> type_names_;
  std::map<uint64_t, CodeInfo> codes_;
};

}  // namespace gilstat::pyruntime

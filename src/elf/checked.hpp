// Checked arithmetic and bounded reads for parsers of untrusted bytes: every
// offset and size read from a file goes through these before it is used.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string_view>
#include <type_traits>

namespace gilstat::elf {

inline std::optional<uint64_t> checked_add(uint64_t a, uint64_t b) {
  uint64_t r;
  if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
  return r;
}

inline std::optional<uint64_t> checked_mul(uint64_t a, uint64_t b) {
  uint64_t r;
  if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}

// A read-only view that refuses every access outside itself.
class ByteView {
 public:
  ByteView() = default;
  explicit ByteView(std::span<const std::byte> data) : data_(data) {}

  uint64_t size() const { return data_.size(); }
  std::span<const std::byte> span() const { return data_; }

  std::optional<ByteView> slice(uint64_t offset, uint64_t length) const {
    auto end = checked_add(offset, length);
    if (!end || *end > data_.size()) return std::nullopt;
    return ByteView(data_.subspan(offset, length));
  }

  template <class T>
  std::optional<T> read(uint64_t offset) const {
    static_assert(std::is_trivially_copyable_v<T>);
    auto end = checked_add(offset, sizeof(T));
    if (!end || *end > data_.size()) return std::nullopt;
    T value;
    std::memcpy(&value, data_.data() + offset, sizeof(T));
    return value;
  }

  // The NUL-terminated string at `offset`; nullopt when no NUL follows within
  // `max_length` bytes or the view ends first.
  std::optional<std::string_view> cstring(uint64_t offset, uint64_t max_length = 4096) const {
    if (offset >= data_.size()) return std::nullopt;
    const uint64_t available = data_.size() - offset;
    const uint64_t limit = available < max_length ? available : max_length;
    const char* begin = reinterpret_cast<const char*>(data_.data() + offset);
    const void* nul = std::memchr(begin, 0, limit);
    if (!nul) return std::nullopt;
    return std::string_view(begin, static_cast<const char*>(nul) - begin);
  }

 private:
  std::span<const std::byte> data_;
};

}  // namespace gilstat::elf

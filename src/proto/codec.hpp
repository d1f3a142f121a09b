// Byte-level building blocks of the recording format (recording.hpp):
// LEB128 varints, zigzag, CRC-32C, a growable output buffer and a cursor
// over untrusted input (recordings, and the shared region's header:
// shm_region.cpp).  The cursor never throws and never reads outside its
// span: a failed read sets a sticky error and yields 0, so a parser checks
// ok() once at the end of a record instead of after every field.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace gilstat::proto {

// CRC-32C (Castagnoli), the checksum of iSCSI/ext4/zstd's frame option; SSE4.2
// computes it in hardware where the CPU has it.
uint32_t crc32c(const void* data, size_t size, uint32_t crc = 0);

inline uint64_t zigzag(int64_t v) {
  return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
}
inline int64_t unzigzag(uint64_t v) {
  return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1);
}

// An append-only byte buffer with the encoders the writer needs.
class ByteSink {
 public:
  void u8(uint8_t v) { buf_.push_back(static_cast<char>(v)); }
  void varint(uint64_t v) {
    char tmp[10];
    size_t n = 0;
    while (v >= 0x80) {
      tmp[n++] = static_cast<char>(v | 0x80);
      v >>= 7;
    }
    tmp[n++] = static_cast<char>(v);
    buf_.append(tmp, n);
  }
  void svarint(int64_t v) { varint(zigzag(v)); }
  void f64(double v) {
    char tmp[8];
    std::memcpy(tmp, &v, 8);
    buf_.append(tmp, 8);
  }
  void le32(uint32_t v) {
    for (int i = 0; i < 4; ++i) u8(static_cast<uint8_t>(v >> (8 * i)));
  }
  void str(std::string_view s) {
    varint(s.size());
    buf_.append(s.data(), s.size());
  }
  void bytes(std::string_view s) { buf_.append(s.data(), s.size()); }

  std::string& data() { return buf_; }
  const std::string& data() const { return buf_; }
  size_t size() const { return buf_.size(); }
  void clear() { buf_.clear(); }

 private:
  std::string buf_;
};

// Reads untrusted bytes.  Every accessor is bounds-checked; after the first
// failure ok() is false and everything reads as 0 / empty.
class ByteCursor {
 public:
  ByteCursor() = default;
  ByteCursor(const void* data, size_t size)
      : p_(static_cast<const uint8_t*>(data)), end_(p_ + size) {}
  explicit ByteCursor(std::string_view s) : ByteCursor(s.data(), s.size()) {}

  bool ok() const { return ok_; }
  void fail() {
    ok_ = false;
    p_ = end_;
  }
  size_t remaining() const { return static_cast<size_t>(end_ - p_); }
  bool at_end() const { return p_ == end_; }
  const uint8_t* pos() const { return p_; }

  uint8_t u8() {
    if (p_ == end_) return fail(), 0;
    return *p_++;
  }
  uint32_t le32() { return static_cast<uint32_t>(little_endian(4)); }
  uint64_t le64() { return little_endian(8); }
  double f64() {
    if (remaining() < 8) return fail(), 0.0;
    double v;
    std::memcpy(&v, p_, 8);
    p_ += 8;
    return v;
  }
  // At most 10 bytes; a 10th byte above 1 (bits past 64) is an error, so
  // every value has exactly one longest form and no overflow is possible.
  uint64_t varint() {
    if (p_ != end_ && *p_ < 0x80) return *p_++;  // most deltas and tags: one byte
    if (end_ - p_ >= 10) {
      // Room for the longest form: no bounds check per byte.
      uint64_t v = 0;
      for (unsigned i = 0; i < 9; ++i) {
        const uint64_t b = p_[i];
        v |= (b & 0x7f) << (7 * i);
        if (b < 0x80) {
          p_ += i + 1;
          return v;
        }
      }
      if (p_[9] > 1) return fail(), 0;
      v |= uint64_t{p_[9]} << 63;
      p_ += 10;
      return v;
    }
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
      if (p_ == end_) return fail(), 0;
      const uint8_t b = *p_++;
      if (shift == 63 && b > 1) return fail(), 0;
      v |= uint64_t{b & 0x7fu} << shift;
      if (!(b & 0x80)) return v;
    }
    return fail(), 0;
  }
  int64_t svarint() { return unzigzag(varint()); }
  // A varint that must fit `max` (a count, an index, a length).
  uint64_t varint_max(uint64_t max) {
    const uint64_t v = varint();
    if (v > max) return fail(), 0;
    return v;
  }
  std::string_view bytes(size_t n) {
    if (n > remaining()) return fail(), std::string_view{};
    std::string_view s(reinterpret_cast<const char*>(p_), n);
    p_ += n;
    return s;
  }
  std::string str(size_t max_len) {
    const uint64_t n = varint();
    if (n > max_len || n > remaining()) return fail(), std::string{};
    return std::string(bytes(static_cast<size_t>(n)));
  }
  // A sub-cursor over the next n bytes, which this cursor skips.
  ByteCursor sub(size_t n) {
    if (n > remaining()) {
      fail();
      ByteCursor bad;
      bad.fail();
      return bad;
    }
    ByteCursor c(p_, n);
    p_ += n;
    return c;
  }

 private:
  // An unsigned little-endian integer of n <= 8 bytes.
  uint64_t little_endian(size_t n) {
    if (remaining() < n) return fail(), 0;
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v |= uint64_t{p_[i]} << (8 * i);
    p_ += n;
    return v;
  }

  const uint8_t* p_ = nullptr;
  const uint8_t* end_ = nullptr;
  bool ok_ = true;
};

}  // namespace gilstat::proto

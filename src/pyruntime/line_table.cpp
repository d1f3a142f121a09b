#include "pyruntime/line_table.hpp"

namespace gilstat::pyruntime {

namespace {

// Line numbers beyond this are not from a real source file.
constexpr int64_t kMaxLine = 1 << 24;

std::optional<int> plausible(int64_t line) {
  if (line < 0 || line > kMaxLine) return std::nullopt;
  return static_cast<int>(line);
}

uint8_t u8(std::span<const std::byte> t, size_t i) { return static_cast<uint8_t>(t[i]); }

}  // namespace

std::optional<int> lnotab_line(std::span<const std::byte> table, int first_line,
                               uint64_t byte_offset) {
  // Objects/codeobject.c PyCode_Addr2Line of 3.8/3.9.
  int64_t line = first_line;
  uint64_t addr = 0;
  for (size_t i = 0; i + 1 < table.size(); i += 2) {
    addr += u8(table, i);
    if (addr > byte_offset) break;
    line += static_cast<int8_t>(u8(table, i + 1));
  }
  return plausible(line);
}

std::optional<int> linetable310_line(std::span<const std::byte> table, int first_line,
                                     uint64_t byte_offset) {
  // Objects/lnotab_notes.txt of 3.10: each pair covers [start, start + delta).
  int64_t line = first_line;
  uint64_t start = 0;
  for (size_t i = 0; i + 1 < table.size(); i += 2) {
    const uint64_t end = start + u8(table, i);
    const int8_t delta = static_cast<int8_t>(u8(table, i + 1));
    if (delta != -128) line += delta;
    if (byte_offset >= start && byte_offset < end) {
      if (delta == -128) return std::nullopt;
      return plausible(line);
    }
    start = end;
  }
  return std::nullopt;
}

namespace {

// A cursor over the location table that never reads past its end.
class Cursor {
 public:
  explicit Cursor(std::span<const std::byte> t) : t_(t) {}
  bool done() const { return at_ >= t_.size(); }
  std::optional<uint8_t> byte() {
    if (done()) return std::nullopt;
    return u8(t_, at_++);
  }
  // 6-bit chunks, least significant first; bit 6 says another follows.
  std::optional<uint64_t> varint() {
    uint64_t value = 0;
    for (int shift = 0; shift < 42; shift += 6) {
      auto b = byte();
      if (!b) return std::nullopt;
      value |= static_cast<uint64_t>(*b & 63) << shift;
      if (!(*b & 64)) return value;
    }
    return std::nullopt;
  }
  std::optional<int64_t> svarint() {
    auto u = varint();
    if (!u) return std::nullopt;
    const int64_t magnitude = static_cast<int64_t>(*u >> 1);
    return (*u & 1) ? -magnitude : magnitude;
  }
  bool skip(size_t n) {
    if (t_.size() - at_ < n) return false;
    at_ += n;
    return true;
  }
  // The next entry starts at a byte with the top bit set.
  bool at_entry() const { return !done() && (u8(t_, at_) & 0x80); }

 private:
  std::span<const std::byte> t_;
  size_t at_ = 0;
};

}  // namespace

std::optional<int> location_table_line(std::span<const std::byte> table, int first_line,
                                       uint64_t unit) {
  Cursor c(table);
  int64_t line = first_line;
  uint64_t start = 0;
  while (!c.done()) {
    if (!c.at_entry()) return std::nullopt;
    const uint8_t first = *c.byte();
    const int code = (first >> 3) & 15;
    const uint64_t end = start + (first & 7) + 1;
    bool has_line = true;
    if (code == 15) {
      has_line = false;       // no location
    } else if (code == 14) {  // long form: line delta, end line, columns
      auto d = c.svarint();
      if (!d || !c.varint() || !c.varint() || !c.varint()) return std::nullopt;
      line += *d;
    } else if (code == 13) {  // no column
      auto d = c.svarint();
      if (!d) return std::nullopt;
      line += *d;
    } else if (code >= 10) {  // one line, two column bytes
      line += code - 10;
      if (!c.skip(2)) return std::nullopt;
    } else {  // short form: same line, one column byte
      if (!c.skip(1)) return std::nullopt;
    }
    if (line < 0 || line > kMaxLine) return std::nullopt;
    if (unit >= start && unit < end) return has_line ? plausible(line) : std::nullopt;
    start = end;
  }
  return std::nullopt;
}

}  // namespace gilstat::pyruntime

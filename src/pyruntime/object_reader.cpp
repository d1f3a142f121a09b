#include "pyruntime/object_reader.hpp"

#include <algorithm>
#include <span>

#include "report/utf8.hpp"

namespace gilstat::pyruntime {

namespace {

constexpr size_t kMaxTypeName = 64;
constexpr size_t kMaxCachedTypes = 256;
constexpr size_t kMaxCachedCodes = 4096;

// One code point as UTF-8; a value that is not a Unicode scalar (a torn
// or hostile string) becomes U+FFFD.
void put_utf8(std::string& out, uint32_t c) {
  if (c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) c = 0xfffd;
  report::utf8_append(out, c);
}

}  // namespace

bool FieldBlock::read(const attach::RemoteMemory& memory, RemoteAddr base, uint32_t lo,
                      uint32_t hi) {
  memory_ = &memory;
  base_ = base;
  lo_ = lo;
  size_ = 0;
  if (hi <= lo || hi - lo > kMaxSpan) return hi > lo;
  if (!memory.read(base + lo, std::span(bytes_.data(), hi - lo))) return false;
  size_ = hi - lo;
  return true;
}

std::optional<RemoteAddr> ObjectReader::ptr(RemoteAddr at) const {
  auto v = u64(at);
  if (!v || (*v & 7)) return std::nullopt;  // objects are 8-aligned
  return RemoteAddr(*v);
}

std::optional<std::string> ObjectReader::type_name(RemoteAddr object) {
  if (object.is_null()) return std::nullopt;
  auto type = ptr(object + l_.ob_type);
  if (!type || type->is_null()) return std::nullopt;
  if (auto it = type_names_.find(type->value()); it != type_names_.end()) return it->second;
  auto name_at = u64(*type + l_.tp_name);  // a C string: any alignment
  if (!name_at || !*name_at) return std::nullopt;
  auto name = memory_.read_cstring(RemoteAddr(*name_at), kMaxTypeName);
  if (!name) return std::nullopt;
  if (type_names_.size() < kMaxCachedTypes) type_names_[type->value()] = *name;
  return name;
}

bool ObjectReader::is_type(RemoteAddr object, const char* name) {
  auto n = type_name(object);
  return n && *n == name;
}

std::optional<std::string> ObjectReader::str(RemoteAddr object, uint64_t max_chars) {
  if (!is_type(object, "str")) return std::nullopt;
  auto state = memory_.read_value<uint32_t>(object + l_.unicode_state);
  auto length = memory_.read_value<int64_t>(object + l_.unicode_length);
  if (!state || !length || *length < 0) return std::nullopt;
  const uint32_t kind = (*state >> l_.unicode_kind_bit) & 7;
  const bool compact = (*state >> l_.unicode_compact_bit) & 1;
  const bool ascii = (*state >> l_.unicode_ascii_bit) & 1;
  if (!compact) return std::nullopt;  // legacy strings: not made by the interpreter itself
  if (kind != 1 && kind != 2 && kind != 4) return std::nullopt;
  if (ascii && kind != 1) return std::nullopt;
  const uint64_t n = std::min<uint64_t>(static_cast<uint64_t>(*length), max_chars);
  std::vector<std::byte> raw(n * kind);
  const RemoteAddr data = object + (ascii ? l_.unicode_ascii_size : l_.unicode_compact_size);
  if (!raw.empty() && !memory_.read(data, raw)) return std::nullopt;
  std::string out;
  out.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    uint32_t c = 0;
    for (uint32_t b = 0; b < kind; ++b)
      c |= static_cast<uint32_t>(static_cast<uint8_t>(raw[i * kind + b])) << (8 * b);
    if (ascii && c >= 0x80) return std::nullopt;  // says ASCII, is not: torn or hostile
    put_utf8(out, c);
  }
  return out;
}

std::optional<std::vector<std::byte>> ObjectReader::bytes(RemoteAddr object, uint64_t max) {
  if (!is_type(object, "bytes")) return std::nullopt;
  auto size = memory_.read_value<int64_t>(object + l_.ob_size);
  if (!size || *size < 0 || static_cast<uint64_t>(*size) > max) return std::nullopt;
  std::vector<std::byte> out(static_cast<size_t>(*size));
  if (!out.empty() && !memory_.read(object + l_.bytes_sval, out)) return std::nullopt;
  return out;
}

const CodeInfo* ObjectReader::code(RemoteAddr object) {
  // The fields that say which code object this is, in one read.
  const uint32_t name_field = l_.code_qualname ? l_.code_qualname : l_.code_name;
  const uint32_t lo =
      std::min({l_.code_firstlineno, name_field, l_.code_filename, l_.code_linetable});
  const uint32_t hi = std::max(
      {l_.code_firstlineno + 4, name_field + 8, l_.code_filename + 8, l_.code_linetable + 8});
  FieldBlock fields;
  if (!fields.read(memory_, object, lo, hi)) return nullptr;
  auto first_line = fields.get<int32_t>(l_.code_firstlineno);
  auto name_at = fields.ptr(name_field);
  auto file_at = fields.ptr(l_.code_filename);
  auto table_at = fields.ptr(l_.code_linetable);
  if (!first_line || !name_at || !file_at || !table_at) return nullptr;
  if (auto it = codes_.find(object.value()); it != codes_.end()) {
    // A code object freed and another one made at the same address (a
    // program's start-up imports, then frees, many): the cached entry
    // stands only while the object still points at the same name, file and
    // line table and has the same first line.
    const CodeInfo& c = it->second;
    if (*first_line == c.first_line && name_at->value() == c.name_at &&
        file_at->value() == c.file_at && table_at->value() == c.table_at)
      return &it->second;
    codes_.erase(it);
  }
  if (!is_type(object, "code")) return nullptr;
  CodeInfo info;
  info.name_at = name_at->value();
  info.file_at = file_at->value();
  info.table_at = table_at->value();
  auto name = str(*name_at, 256);
  auto file = str(*file_at, 1024);
  auto table = bytes(*table_at);
  if (!name || !file || !table) return nullptr;
  info.function = std::move(*name);
  info.file = std::move(*file);
  info.first_line = *first_line;
  info.line_table = std::move(*table);
  if (l_.code_code_adaptive) {
    auto units = memory_.read_value<int64_t>(object + l_.ob_size);
    if (!units || *units < 0 || static_cast<uint64_t>(*units) > kMaxBytes) return nullptr;
    info.code_units = static_cast<uint64_t>(*units);
  }
  if (codes_.size() >= kMaxCachedCodes) codes_.clear();
  return &codes_.emplace(object.value(), std::move(info)).first->second;
}

std::optional<RemoteAddr> ObjectReader::instance_attribute(RemoteAddr object,
                                                           const std::string& name) {
  auto type = ptr(object + l_.ob_type);
  if (!type || type->is_null()) return std::nullopt;
  auto flags = u64(*type + l_.tp_flags);
  if (!flags) return std::nullopt;
  const bool managed = minor_ >= 11 && (*flags & cpython::kTpFlagsManagedDict);
  if (!managed) {
    // A dict at tp_dictoffset (the only way before 3.11).
    auto offset = memory_.read_value<int64_t>(*type + l_.tp_dictoffset);
    if (!offset || *offset <= 0 || *offset > 4096) return std::nullopt;
    auto dict = ptr(object + static_cast<uint64_t>(*offset));
    if (!dict || dict->is_null()) return std::nullopt;
    return dict_item(*dict, name);
  }
  auto cached_keys = [&]() { return ptr(*type + l_.ht_cached_keys); };
  const RemoteAddr before = object - static_cast<uint64_t>(-l_.managed_dict_offset);
  if (minor_ == 11) {
    // Values right before the managed dict pointer; the keys are the type's.
    auto values = ptr(before - 8);
    if (values && !values->is_null()) {
      auto keys = cached_keys();
      if (!keys || keys->is_null()) return std::nullopt;
      return keys_item(*keys, *values, name);
    }
  } else if (minor_ == 12) {
    // _PyDictOrValues: a tagged values pointer (low bit set) or the dict.
    auto raw = u64(before);
    if (!raw) return std::nullopt;
    if (*raw & 1) {
      auto keys = cached_keys();
      if (!keys || keys->is_null()) return std::nullopt;
      return keys_item(*keys, RemoteAddr(*raw + 1), name);
    }
    if (*raw == 0 || (*raw & 7)) return std::nullopt;
    return dict_item(RemoteAddr(*raw), name);
  } else {
    // 3.13+: a materialised dict wins; else the values inline after the object.
    auto dict = ptr(before);
    if (dict && !dict->is_null()) return dict_item(*dict, name);
    if (!(*flags & cpython::kTpFlagsInlineValues)) return std::nullopt;
    auto basic = memory_.read_value<int64_t>(*type + l_.tp_basicsize);
    if (!basic || *basic <= 0 || *basic > 4096) return std::nullopt;
    const RemoteAddr values = object + static_cast<uint64_t>(*basic);
    auto valid = memory_.read_value<uint8_t>(values + static_cast<uint64_t>(l_.values_valid));
    if (!valid || !*valid) return std::nullopt;
    auto keys = cached_keys();
    if (!keys || keys->is_null()) return std::nullopt;
    return keys_item(*keys, values + l_.values_values, name);
  }
  auto dict = ptr(before);
  if (!dict || dict->is_null()) return std::nullopt;
  return dict_item(*dict, name);
}

std::optional<RemoteAddr> ObjectReader::dict_item(RemoteAddr dict, const std::string& key) {
  if (!is_type(dict, "dict")) return std::nullopt;
  auto keys = ptr(dict + l_.dict_keys);
  auto values = ptr(dict + l_.dict_values);
  if (!keys || keys->is_null() || !values) return std::nullopt;
  if (values->is_null()) return keys_item(*keys, std::nullopt, key);
  return keys_item(*keys, *values + (minor_ >= 13 ? l_.values_values : 0), key);
}

std::optional<RemoteAddr> ObjectReader::keys_item(RemoteAddr keys, std::optional<RemoteAddr> values,
                                                  const std::string& key) {
  auto nentries = memory_.read_value<int64_t>(keys + l_.keys_nentries);
  if (!nentries || *nentries < 0 || static_cast<uint64_t>(*nentries) > kMaxDictEntries)
    return std::nullopt;
  uint64_t index_bytes = 0;
  uint64_t entry_size = 24, key_at = 8, value_at = 16;  // PyDictKeyEntry: hash, key, value
  if (minor_ <= 10) {
    auto size = memory_.read_value<int64_t>(keys + l_.keys_size);
    if (!size || *size <= 0 || (*size & (*size - 1)) || *size > (1 << 20)) return std::nullopt;
    const uint64_t s = static_cast<uint64_t>(*size);
    index_bytes = s * (s <= 0xff ? 1 : s <= 0xffff ? 2 : 4);
  } else {
    auto log2_index = memory_.read_value<uint8_t>(keys + l_.keys_log2_index_bytes);
    auto kind = memory_.read_value<uint8_t>(keys + l_.keys_kind);
    if (!log2_index || !kind || *log2_index > 22) return std::nullopt;
    index_bytes = uint64_t{1} << *log2_index;
    if (*kind != 0) entry_size = 16, key_at = 0, value_at = 8;  // PyDictUnicodeEntry
  }
  if (index_bytes > kMaxIndexBytes) return std::nullopt;
  const uint64_t n = static_cast<uint64_t>(*nentries);
  std::vector<uint64_t> entries(n * entry_size / 8);
  const RemoteAddr first = keys + l_.keys_indices + index_bytes;
  if (n && !memory_.read(first, std::as_writable_bytes(std::span(entries)))) return std::nullopt;
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t k = entries[(i * entry_size + key_at) / 8];
    if (k == 0 || (k & 7)) continue;  // a deleted or empty slot
    auto text = str(RemoteAddr(k), key.size() + 1);
    if (!text || *text != key) continue;
    if (!values) {
      const uint64_t v = entries[(i * entry_size + value_at) / 8];
      if (v == 0 || (v & 7)) return std::nullopt;
      return RemoteAddr(v);
    }
    auto v = ptr(*values + i * 8);
    if (!v || v->is_null()) return std::nullopt;
    return v;
  }
  return std::nullopt;
}

}  // namespace gilstat::pyruntime

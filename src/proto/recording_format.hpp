// Internals shared by the recording reader (recording_reader.cpp) and writer
// (recording_writer.cpp): the constants of the format described in
// recording.hpp and the Meta record, which both sides must agree on byte for
// byte.  Not part of the proto API.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>

#include "proto/codec.hpp"
#include "proto/recording.hpp"

namespace gilstat::proto::format {

enum Codec : uint8_t { kCodecNone = 0, kCodecZstd = 1 };
constexpr uint64_t kMetaFreeThreaded = 1, kMetaSharedLib = 2;
constexpr size_t kValueMru = 4;
constexpr uint8_t kValueLiteral = kValueMru;

inline bool is_sequenced(uint8_t kind) {
  return kind == static_cast<uint8_t>(EventKind::Acquire) ||
         kind == static_cast<uint8_t>(EventKind::Release) ||
         kind == static_cast<uint8_t>(EventKind::DropRequest);
}

inline std::string_view capped(const std::string& s) {
  return std::string_view(s).substr(0, kMaxStringBytes);
}

inline void encode_meta(ByteSink& b, const RecMeta& m) {
  b.svarint(m.pid);
  b.varint(static_cast<uint32_t>(m.clock));
  b.varint(m.py_version_hex);
  b.varint((m.free_threaded ? kMetaFreeThreaded : 0) | (m.libpython_shared ? kMetaSharedLib : 0));
  b.varint(m.window_start);
  b.str(capped(m.gilstat_version));
  b.str(capped(m.py_version));
  b.str(capped(m.command));
  b.str(capped(m.host));
  b.varint(m.start_unix_ns);
  b.varint(m.start_mono_ns);
}

inline bool decode_meta(ByteCursor c, RecMeta& m) {
  const int64_t pid = c.svarint();
  m.pid = static_cast<int32_t>(std::clamp<int64_t>(pid, INT32_MIN, INT32_MAX));
  m.clock = static_cast<ClockKind>(c.varint_max(UINT32_MAX));
  m.py_version_hex = static_cast<uint32_t>(c.varint_max(UINT32_MAX));
  const uint64_t flags = c.varint();
  m.free_threaded = flags & kMetaFreeThreaded;
  m.libpython_shared = flags & kMetaSharedLib;
  m.window_start = c.varint();
  m.gilstat_version = c.str(kMaxStringBytes);
  m.py_version = c.str(kMaxStringBytes);
  m.command = c.str(kMaxStringBytes);
  m.host = c.str(kMaxStringBytes);
  m.start_unix_ns = c.varint();
  m.start_mono_ns = c.varint();
  return c.ok();
}

}  // namespace gilstat::proto::format

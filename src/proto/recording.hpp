// A recording: what `gilstat run -o FILE` saves and `gilstat report FILE`
// reads.  Version 1 is a simple stream of typed records (the crash-safe,
// compressed format is a later version).
//
//   file    := magic "GILSTREC" | u32 format_version | record*
//   record  := u8 type | u32 payload_length | payload
//   Meta    (1): i32 pid | u32 clock | u32 py_hex | u8 free_threaded | u8 shared
//                | u64 window_start | str gilstat_version | str py_version | str command
//   Event   (2): u32 tid | u32 ring_flags | proto::Event (24 bytes)
//   Name    (3): u32 tid | str name
//   Drops   (4): u32 tid | u64 count
//   Gil     (5): u32 index | u64 address | u64 initial_sn | u64 final_sn
//                | u64 initial_holder | u32 n | i64 interp_id * n
//   End     (6): u64 window_end | f64 ns_per_tick | u64 drops_no_ring
//   str     := u32 length | bytes
// Little-endian.  Events of one thread appear in that thread's order.
// Unknown record types are skipped by length, so later versions may add some.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "gilstat/protocol.hpp"

namespace gilstat::proto {

inline constexpr char kRecordingMagic[8] = {'G', 'I', 'L', 'S', 'T', 'R', 'E', 'C'};
inline constexpr uint32_t kRecordingVersion = 1;

struct RecMeta {
  int32_t pid = 0;
  ClockKind clock = ClockKind::Monotonic;
  uint32_t py_version_hex = 0;
  bool free_threaded = false;
  bool libpython_shared = false;
  uint64_t window_start = 0;
  std::string gilstat_version;
  std::string py_version;
  std::string command;
};

struct RecGil {
  uint32_t index = 0;
  uint64_t address = 0;
  uint64_t initial_switch_number = 0;
  uint64_t final_switch_number = 0;
  uint64_t initial_holder = 0;
  std::vector<int64_t> interp_ids;
};

struct RecEnd {
  uint64_t window_end = 0;
  double ns_per_tick = 1.0;
  uint64_t drops_no_ring = 0;
};

class RecordingWriter {
 public:
  // Throws gilstat::Error when the file cannot be created.
  explicit RecordingWriter(const std::string& path);
  ~RecordingWriter();
  RecordingWriter(const RecordingWriter&) = delete;
  RecordingWriter& operator=(const RecordingWriter&) = delete;

  void meta(const RecMeta&);
  void event(uint32_t tid, uint32_t flags, const Event&);
  void name(uint32_t tid, const std::string&);
  void drops(uint32_t tid, uint64_t count);
  void gil(const RecGil&);
  void end(const RecEnd&);
  void close();  // flushes; throws on a write error
  uint64_t bytes() const { return bytes_; }

 private:
  void record(uint8_t type, const std::string& payload);
  std::string path_;
  FILE* file_ = nullptr;
  uint64_t bytes_ = 0;
};

class RecordingVisitor {
 public:
  virtual ~RecordingVisitor() = default;
  virtual void on_meta(const RecMeta&) {}
  virtual void on_event(uint32_t, uint32_t, const Event&) {}
  virtual void on_name(uint32_t, const std::string&) {}
  virtual void on_drops(uint32_t, uint64_t) {}
  virtual void on_gil(const RecGil&) {}
  virtual void on_end(const RecEnd&) {}
};

struct ReadResult {
  bool complete = false;  // an End record was seen
  bool truncated = false; // the file ends inside a record
};

// Reads a whole recording.  Throws gilstat::Error on a file that is not a
// recording, from a newer format version, or corrupt.
ReadResult read_recording(const std::string& path, RecordingVisitor& visitor);

}  // namespace gilstat::proto

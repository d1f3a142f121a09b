// A recording: what `gilstat record`/`run -o FILE` saves and `gilstat report`
// and `gilstat export` read.  Format version 2 (version 1, an uncompressed
// stream of fixed records, is no longer read: nothing in the field uses it).
//
//   file     +--------------------------------------------------------------+
//            | "GILSTREC"  u32 format_version (=2)                          | 12 bytes
//            | u32 header_len | header: Meta body | u32 crc32c(version..body)|
//            +--------------------------------------------------------------+
//            | chunk | chunk | ... | chunk(End)                              |
//            +--------------------------------------------------------------+
//
//   chunk    +------+------------+---------+-------------+-------+-----+------------+
//            | sync | stored_len | raw_len | payload_crc | codec | 0 0 0| header_crc|  24 bytes
//            | "GCHK" u32        | u32     | u32 crc32c  | u8    |     | u32 crc32c |
//            +------+------------+---------+-------------+-------+-----+------------+
//            | payload: stored_len bytes, zstd frame (codec 1) or plain (codec 0)   |
//            +-----------------------------------------------------------------------+
//            header_crc covers the 20 bytes before it, payload_crc the stored bytes.
//            A chunk stands alone: it decodes without any other chunk, so a
//            reader skips a corrupt one (bad CRC, bad zstd) and goes on; after
//            a damaged header it scans for the next "GCHK" whose header CRC holds.
//
//   payload  := record*            (after decompression: raw_len bytes)
//   record   := varint type | varint body_len | body
//              Unknown types are skipped by length; a body may be longer than
//              the fields this version reads (fields are only ever appended).
//
//   type body (v = LEB128 varint, s = zigzag varint, str = v length + bytes,
//              f64 = 8 bytes little-endian IEEE)
//   1 Meta   s pid | v clock | v py_version_hex | v flags (1 free-threaded,
//            2 shared libpython) | v window_start | str gilstat_version
//            | str py_version | str command | str host | v start_unix_ns
//            | v start_mono_ns
//   2 Events v tid | v ring_flags | v n | v ts_bytes | v seq_bytes | v value_bytes
//            | kind[n] | gil[n] | ts column | seq column | value column
//            One thread's events in ring order, columns so that zstd finds the
//            repetition; every delta restarts at 0 in each block:
//              ts:    s (ts - previous ts)                   (first: ts itself)
//              seq:   s (int32)(seq - predicted), predicted = previous
//                     sequenced seq + 1 for Acquire/Release/DropRequest, else 0
//              value: u8 tag: 0..3 = the tag-th most recent distinct value of
//                     this block (move-to-front, starts all 0), 4 = v literal
//   3 Name   v tid | str name                  (whenever a thread's name changes)
//   4 Drops  v tid | v count                   (new ring-full drops of a thread)
//   5 Gil    v index | v address | v initial_switch_number | v switch_number
//            | v initial_holder | v n | s interp_id * n   (when it appears / at end)
//            [| v flags (1: the probe's counters follow) | v acquisitions
//            | v switches | v drop_requests]
//            [| v arm_ts | v n | (v tid | v role) * n]   (when the probe armed
//            it, raw clock; the threads seen from outside holding (role 1) or
//            waiting (2) at that moment: their time counts from arm_ts)
//   6 End    v window_end | f64 ns_per_tick | v drops_no_ring   (last record)
//            [| v flags (1: the Totals records cover every thread of the window)]
//   7 Clock  v raw | v monotonic_ns | v drops_no_ring  (with every timed flush:
//            calibration pairs and progress, so a cut-off file still converts
//            ticks to ns and knows how far it got)
//   8 HostIds s host_pid | v n | (v tid | v host_tid) * n   (a target in another
//            PID namespace: the ids the recording's host sees for the pid and
//            tids the probe reported; new pairs as threads appear)
//   9 Totals v tid | v ring_flags | v gil | v lifetime | v held | v wait
//            | v released | v acquisitions | v forced_handoffs   (raw clock
//            units; the probe's exact totals of a thread that ended, and at
//            the end those of the threads still running; one tid may have
//            several, which add up)
//   10 Frame v id | v kind (1 Python, 2 native) | str function | str file | v line
//            | str object | v offset      (ids 0, 1, 2, ... in order, each once)
//   11 Stack v id | v n | v frame_id * n  (innermost first; ids in order, each once)
//   12 Sample v tid | v gil | v ts | v stack_id | v reason (1 profile, 2 long hold)
//            | v hold_start                (the holder's stack; see stacks/)
//   13 Module str path | v state | v releases | v released | v restores
//            | v restore_wait | v ensures | v ensure_wait | v gil_releases
//            | v callback_held | v not_hooked   (raw clock units; one per object
//            of the probe's module table at the end, report/modules.hpp;
//            not_hooked: objects the full table left out, the same in each)
//
// The writer flushes a chunk every WriterOptions::chunk_events events or
// every flush_interval, each with one write(2): a SIGKILLed writer leaves a
// file that reads up to its last complete chunk.  All of this runs in the
// CLI; the probe only fills the rings.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "gilstat/protocol.hpp"
#include "proto/codec.hpp"
#include "report/exact_totals.hpp"
#include "report/modules.hpp"
#include "stacks/stack_table.hpp"

namespace gilstat::proto {

inline constexpr char kRecordingMagic[8] = {'G', 'I', 'L', 'S', 'T', 'R', 'E', 'C'};
inline constexpr uint32_t kRecordingVersion = 2;
inline constexpr char kChunkSync[4] = {'G', 'C', 'H', 'K'};
inline constexpr size_t kChunkHeaderSize = 24;
// Reader limits: far above what the writer produces, low enough that a
// hostile file cannot make the reader allocate much.
inline constexpr uint32_t kMaxChunkBytes = 32u << 20;
inline constexpr uint32_t kMaxHeaderBytes = 8u << 20;
inline constexpr size_t kMaxStringBytes = 1u << 20;  // command lines
inline constexpr size_t kMaxNameBytes = 1024;        // thread names (the probe's are 48)

enum class RecordType : uint8_t {
  Meta = 1,
  Events = 2,
  Name = 3,
  Drops = 4,
  Gil = 5,
  End = 6,
  Clock = 7,
  HostIds = 8,
  Totals = 9,
  Frame = 10,
  Stack = 11,
  Sample = 12,
  Module = 13,
};

// At most this many threads held or waited at a GIL's arm (Gil record).
inline constexpr uint64_t kMaxArmStates = 256;

// At most this many (tid, host tid) pairs per HostIds record.
inline constexpr uint64_t kMaxHostIdPairs = 1u << 16;
using TidPair = std::pair<uint32_t, uint32_t>;  // (tid as the probe saw it, host tid)

struct RecMeta {
  int32_t pid = 0;
  ClockKind clock = ClockKind::Monotonic;
  uint32_t py_version_hex = 0;
  bool free_threaded = false;
  bool libpython_shared = false;
  uint64_t window_start = 0;  // raw clock units
  std::string gilstat_version;
  std::string py_version;
  std::string command;
  // Filled in by the writer when left empty / 0.
  std::string host;
  uint64_t start_unix_ns = 0;  // CLOCK_REALTIME when the file was created
  uint64_t start_mono_ns = 0;  // CLOCK_MONOTONIC at the same moment
  bool operator==(const RecMeta&) const = default;
};

struct RecGil {
  uint32_t index = 0;
  uint64_t address = 0;
  uint64_t initial_switch_number = 0;
  uint64_t final_switch_number = 0;  // at the time of writing; final in the last one
  uint64_t initial_holder = 0;
  std::vector<int64_t> interp_ids;
  // The probe's exact counters (proto::GilSlot) at the time of writing.
  bool counters = false;
  uint64_t acquisitions = 0;
  uint64_t switches = 0;
  uint64_t drop_requests = 0;
  // When the probe armed it (0: unknown) and who held (role 1) or waited
  // for it (2) at that moment, as seen from outside.
  uint64_t arm_ts = 0;
  std::vector<std::pair<uint32_t, uint8_t>> at_arm = {};
  bool operator==(const RecGil&) const = default;
};

struct RecEnd {
  uint64_t window_end = 0;
  double ns_per_tick = 1.0;
  uint64_t drops_no_ring = 0;
  // The recording's Totals records cover every thread of the window.
  bool totals_exact = false;
  bool operator==(const RecEnd&) const = default;
};

// A calibration pair: the recording's clock and CLOCK_MONOTONIC read together.
using RecTotals = report::ExactTotals;
using RecModule = report::ModuleCounts;

struct RecClock {
  uint64_t raw = 0;
  uint64_t mono_ns = 0;
  uint64_t drops_no_ring = 0;
  bool operator==(const RecClock&) const = default;
};

struct WriterOptions {
  uint32_t chunk_events = 16384;  // below the aggregator's reorder window
  // A SIGKILLed writer loses at most this much.  Shorter costs size: a
  // chunk has fixed costs (header, zstd frame, each thread's first
  // timestamp) and small chunks compress badly; at 100 ms a 4-thread spin
  // took ~5 bytes/event, at 1 s ~3.4 (the goal is <= 4).
  uint64_t flush_interval_ns = 1'000'000'000;
  int zstd_level = 3;
};

class RecordingWriter {
 public:
  // Creates the file and writes its header.  Throws gilstat::Error when the
  // file cannot be created.
  explicit RecordingWriter(const std::string& path, const RecMeta& header = {},
                           const WriterOptions& options = {});
  ~RecordingWriter();
  RecordingWriter(const RecordingWriter&) = delete;
  RecordingWriter& operator=(const RecordingWriter&) = delete;

  void meta(const RecMeta&);
  void event(uint32_t tid, uint32_t flags, const Event&);
  void name(uint32_t tid, const std::string&);
  void drops(uint32_t tid, uint64_t count);
  void gil(const RecGil&);
  void totals(const RecTotals&);
  void module(const RecModule&, uint64_t not_hooked);
  void clock(const RecClock&);
  void host_ids(int32_t host_pid, std::span<const TidPair> pairs);
  // Stacks: each frame and stack once, by the ids of the caller's
  // StackTable (defined before any sample uses them).
  void frame(uint32_t id, const stacks::Frame& f);
  void stack(uint32_t id, std::span<const uint32_t> frame_ids);
  void sample(const stacks::Sample& s);
  void end(const RecEnd&);  // and flushes

  // Whether a timed flush is due: something is pending and the last flush
  // is flush_interval old.
  bool flush_due() const;
  void flush();
  void close();  // flushes; throws gilstat::Error on any write error so far

  uint64_t bytes() const { return bytes_; }    // written to the file so far
  uint64_t events() const { return events_; }  // accepted so far
  uint64_t chunks() const { return chunks_; }

 private:
  struct Block {
    uint32_t tid;
    uint32_t flags;
    std::vector<Event> events;
  };
  void complete_meta(RecMeta& m) const;
  void begin_record(RecordType type, const ByteSink& body);
  void encode_block(const Block& b);
  void write_all(const char* data, size_t size);

  std::string path_;
  WriterOptions options_;
  int fd_ = -1;
  int write_errno_ = 0;
  uint64_t bytes_ = 0;
  uint64_t events_ = 0;
  uint64_t chunks_ = 0;
  uint64_t last_flush_ns_ = 0;
  std::string host_;
  uint64_t start_unix_ns_ = 0;
  uint64_t start_mono_ns_ = 0;

  // The chunk being built.
  ByteSink records_;
  std::vector<Block> blocks_;
  std::unordered_map<uint64_t, size_t> block_index_;  // (tid << 32 | flags) -> blocks_
  size_t last_block_ = SIZE_MAX;
  uint64_t last_block_key_ = 0;
  size_t pending_events_ = 0;
  // Scratch, kept between chunks.
  ByteSink body_, ts_col_, seq_col_, value_col_;
  std::string compressed_;
  struct ZstdCtx;
  std::unique_ptr<ZstdCtx> zstd_;
};

class RecordingVisitor {
 public:
  virtual ~RecordingVisitor() = default;
  // false: Events records are checked for length only, not decoded (a
  // metadata-only pass).
  virtual bool wants_events() const { return true; }
  virtual void on_header(const RecMeta&) {}  // the file header
  virtual void on_meta(const RecMeta&) {}
  // A batch of one thread's events in ring order.  The default hands them
  // to on_event one by one.
  virtual void on_events(uint32_t tid, uint32_t flags, std::span<const Event> events) {
    for (const Event& ev : events) on_event(tid, flags, ev);
  }
  virtual void on_event(uint32_t, uint32_t, const Event&) {}
  virtual void on_name(uint32_t, const std::string&) {}
  virtual void on_drops(uint32_t, uint64_t) {}
  virtual void on_gil(const RecGil&) {}
  virtual void on_totals(const RecTotals&) {}
  virtual void on_module(const RecModule&, uint64_t /*not_hooked*/) {}
  virtual void on_clock(const RecClock&) {}
  virtual void on_host_ids(int32_t /*host_pid*/, std::span<const TidPair>) {}
  virtual void on_frame(uint32_t /*id*/, const stacks::Frame&) {}
  virtual void on_stack(uint32_t /*id*/, std::span<const uint32_t> /*frame_ids*/) {}
  virtual void on_sample(const stacks::Sample&) {}
  virtual void on_end(const RecEnd&) {}
};

struct ReadResult {
  uint32_t format_version = 0;
  bool header_ok = false;  // the file header was read and its CRC holds
  bool complete = false;   // an End record was read
  // The file ends without an End record (its writer was killed, or the disk
  // filled): everything up to the last complete chunk was read.
  bool truncated = false;
  uint64_t file_size = 0;
  uint64_t tail_bytes = 0;  // bytes of an incomplete last chunk (ignored)
  uint64_t chunks = 0;      // chunks read successfully
  uint64_t corrupt_chunks = 0;
  uint64_t skipped_bytes = 0;  // in damaged or unreadable parts
  uint64_t events = 0;
  // What went wrong, for people: at most kMaxProblems lines.
  static constexpr size_t kMaxProblems = 20;
  std::vector<std::string> problems;
  uint64_t problem_count = 0;
};

// Reads a whole recording, streaming: memory does not grow with its size.
// Throws gilstat::Error when the file cannot be opened, is not a recording
// or comes from a newer format version.  Damage is never an exception: it is
// skipped and described in the result.
ReadResult read_recording(const std::string& path, RecordingVisitor& visitor);
// The same over bytes in memory (tests, the fuzzer).
ReadResult read_recording_bytes(std::string_view bytes, RecordingVisitor& visitor);

// One chunk's decompressed payload (exposed for the fuzzer and tests).
// Returns false when it is malformed; records before the damage have been
// delivered.
bool parse_chunk_payload(std::string_view payload, RecordingVisitor& visitor, ReadResult& result);

}  // namespace gilstat::proto

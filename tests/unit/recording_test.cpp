// The recording format (src/proto/recording.hpp): every record type survives
// a round trip bit for bit; a file cut at any byte reads up to its last
// complete chunk and says it is truncated; damaged chunks are skipped and
// reported; a newer format is refused; nothing ever crashes the reader.
#include "proto/recording.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include "common/error.hpp"
#include "proto/recording_summary.hpp"

namespace gilstat::proto {
namespace {

namespace fs = std::filesystem;

// Everything a reader hands over, in order, as comparable values.
struct Collected : RecordingVisitor {
  std::vector<RecMeta> headers, metas;
  std::map<uint32_t, std::vector<Event>> events;  // by tid, in order
  std::map<uint32_t, uint32_t> flags;
  std::vector<std::pair<uint32_t, std::string>> names;
  std::vector<std::pair<uint32_t, uint64_t>> drops;
  std::vector<RecGil> gils;
  std::vector<RecClock> clocks;
  std::vector<RecEnd> ends;
  uint64_t event_count = 0;

  void on_header(const RecMeta& m) override { headers.push_back(m); }
  void on_meta(const RecMeta& m) override { metas.push_back(m); }
  void on_event(uint32_t tid, uint32_t f, const Event& ev) override {
    events[tid].push_back(ev);
    flags[tid] = f;
    ++event_count;
  }
  void on_name(uint32_t tid, const std::string& n) override { names.emplace_back(tid, n); }
  void on_drops(uint32_t tid, uint64_t n) override { drops.emplace_back(tid, n); }
  void on_gil(const RecGil& g) override { gils.push_back(g); }
  void on_clock(const RecClock& k) override { clocks.push_back(k); }
  void on_end(const RecEnd& e) override { ends.push_back(e); }
};

bool same(const Event& a, const Event& b) {
  return a.ts == b.ts && a.value == b.value && a.seq == b.seq && a.kind == b.kind && a.gil == b.gil;
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/gilstat-rec-test-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string file(const std::string& name) const { return (fs::path(path_) / name).string(); }

 private:
  std::string path_;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// A recording with a bit of everything, several chunks long.
struct Sample {
  RecMeta meta;
  std::map<uint32_t, std::vector<Event>> events;
  std::vector<RecGil> gils;
  RecEnd end;
};

Sample write_sample(const std::string& path, uint32_t chunk_events = 64, int n_events = 1000,
                    uint64_t seed = 5) {
  Sample s;
  s.meta.pid = 4242;
  s.meta.clock = ClockKind::Tsc;
  s.meta.py_version_hex = 0x030d01f0;
  s.meta.free_threaded = true;
  s.meta.libpython_shared = true;
  s.meta.window_start = 123456789;
  s.meta.gilstat_version = "9.9.9";
  s.meta.py_version = "3.13.1";
  s.meta.command = std::string("python3 -c 'print(\"\\x00\")'\n\x01\xff", 30);
  WriterOptions opts;
  opts.chunk_events = chunk_events;
  RecordingWriter w(path, s.meta, opts);
  w.meta(s.meta);
  w.name(7, "MainThread");
  w.name(8, "");
  w.name(9, std::string("bin\0ary\xc3", 9));
  w.drops(8, 3);
  RecGil g0{0, 0x7f0000001000, 5, 5, 0x7f00aa, {0}};
  RecGil g1{1, UINT64_MAX, UINT64_MAX, 0, 0, {-1, 2, INT64_MAX, INT64_MIN}};
  w.gil(g0);
  w.gil(g1);
  s.gils = {g0, g1};
  w.clock({1000, 2000, 0});
  std::mt19937_64 rng(seed);
  uint32_t seq = UINT32_MAX - 300;       // wraps during the recording
  uint64_t ts = UINT64_MAX - 1'000'000;  // and so do the timestamps
  const uint64_t values[] = {0, 0x7f00aa, 0x7f00bb, 0x7f00cc, 0x7f00dd, 0x7f00ee, UINT64_MAX};
  for (int i = 0; i < n_events; ++i) {
    const uint32_t tid = 7 + static_cast<uint32_t>(rng() % 3);
    Event ev{};
    // Mostly plausible, sometimes anything: the format must not care.
    ev.kind = static_cast<uint8_t>(i % 97 == 0 ? rng() % 256 : 1 + rng() % 6);
    ev.gil = static_cast<uint8_t>(i % 89 == 0 ? rng() % 256 : rng() % 2);
    ts += (i % 50 == 0) ? -static_cast<uint64_t>(rng() % 1000) : rng() % 20'000'000;
    ev.ts = ts;
    const bool sequenced = ev.kind >= 2 && ev.kind <= 4;
    ev.seq = sequenced ? (i % 71 == 0 ? static_cast<uint32_t>(rng()) : seq += 1 + rng() % 3)
                       : (i % 83 == 0 ? 77u : 0u);
    ev.value = i % 61 == 0 ? rng() : values[rng() % 7];
    w.event(tid, tid == 9 ? uint32_t{kRingOwnThread} : 0u, ev);
    s.events[tid].push_back(ev);
    if (i == n_events / 2) {
      w.name(7, "renamed");
      w.clock({5000, 9000, 1});
    }
  }
  s.end = {ts, 0.40892, 17};
  w.gil(g0);
  w.end(s.end);
  w.close();
  return s;
}

void expect_events_prefix(const Sample& s, const Collected& c) {
  for (const auto& [tid, got] : c.events) {
    const auto& want = s.events.at(tid);
    ASSERT_LE(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) ASSERT_TRUE(same(got[i], want[i])) << tid << " " << i;
  }
}

TEST(Recording, EveryRecordTypeRoundTrips) {
  TempDir dir;
  const std::string path = dir.file("a.gst");
  const Sample s = write_sample(path);
  Collected c;
  const ReadResult r = read_recording(path, c);
  EXPECT_EQ(r.format_version, kRecordingVersion);
  EXPECT_TRUE(r.header_ok);
  EXPECT_TRUE(r.complete);
  EXPECT_FALSE(r.truncated);
  EXPECT_EQ(r.corrupt_chunks, 0u);
  EXPECT_TRUE(r.problems.empty());
  EXPECT_GT(r.chunks, 10u);  // 1000 events, 64 per chunk

  ASSERT_EQ(c.headers.size(), 1u);
  ASSERT_EQ(c.metas.size(), 1u);
  RecMeta want = s.meta;
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  want.host = host;  // filled in by the writer
  want.start_unix_ns = c.metas[0].start_unix_ns;
  want.start_mono_ns = c.metas[0].start_mono_ns;
  EXPECT_GT(want.start_unix_ns, 0u);
  EXPECT_EQ(c.metas[0], want);
  EXPECT_EQ(c.headers[0], want);

  ASSERT_EQ(c.events.size(), s.events.size());
  for (const auto& [tid, want_events] : s.events) {
    const auto& got = c.events[tid];
    ASSERT_EQ(got.size(), want_events.size()) << tid;
    for (size_t i = 0; i < got.size(); ++i) ASSERT_TRUE(same(got[i], want_events[i])) << i;
  }
  EXPECT_EQ(c.flags[9], uint32_t{kRingOwnThread});
  EXPECT_EQ(c.flags[7], 0u);
  EXPECT_EQ(r.events, 1000u);

  const std::vector<std::pair<uint32_t, std::string>> names = {
      {7, "MainThread"}, {8, ""}, {9, std::string("bin\0ary\xc3", 9)}, {7, "renamed"}};
  EXPECT_EQ(c.names, names);
  EXPECT_EQ(c.drops, (std::vector<std::pair<uint32_t, uint64_t>>{{8, 3}}));
  ASSERT_EQ(c.gils.size(), 3u);
  EXPECT_EQ(c.gils[0], s.gils[0]);
  EXPECT_EQ(c.gils[1], s.gils[1]);
  EXPECT_EQ(c.gils[2], s.gils[0]);
  EXPECT_EQ(c.clocks, (std::vector<RecClock>{{1000, 2000, 0}, {5000, 9000, 1}}));
  ASSERT_EQ(c.ends.size(), 1u);
  EXPECT_EQ(c.ends[0], s.end);
}

TEST(Recording, SummaryKeepsTheLatestOfEverything) {
  TempDir dir;
  const std::string path = dir.file("a.gst");
  const Sample s = write_sample(path);
  Collected c;
  RecordingSummary summary(&c);
  read_recording(path, summary);
  EXPECT_EQ(c.event_count, 1000u);  // forwarded
  EXPECT_EQ(summary.names().at(7), "renamed");
  ASSERT_EQ(summary.gils().size(), 2u);
  EXPECT_EQ(summary.meta().pid, 4242);
  EXPECT_TRUE(summary.end_record().has_value());
  bool calibrated = false;
  EXPECT_EQ(summary.effective_end(&calibrated), s.end);
  EXPECT_TRUE(calibrated);
}

TEST(Recording, ACutOffFileReconstructsItsEndFromClockSamples) {
  TempDir dir;
  const std::string path = dir.file("a.gst");
  {
    RecMeta m;
    m.clock = ClockKind::Tsc;
    m.window_start = 1000;
    RecordingWriter w(path, m);
    w.meta(m);
    w.clock({1000, 500, 0});
    w.event(1, 0, Event{3000, 0, 0, 1, 0, 0});
    w.clock({5000, 2500, 4});  // 2 ns per tick
    w.flush();
    // No end(): the writer is "killed" (its destructor flushes nothing new).
  }
  RecordingSummary summary;
  const ReadResult r = read_recording(path, summary);
  EXPECT_TRUE(r.truncated);
  EXPECT_FALSE(r.complete);
  bool calibrated = false;
  const RecEnd end = summary.effective_end(&calibrated);
  EXPECT_TRUE(calibrated);
  EXPECT_EQ(end.window_end, 5000u);
  EXPECT_DOUBLE_EQ(end.ns_per_tick, 0.5);
  EXPECT_EQ(end.drops_no_ring, 4u);
}

TEST(Recording, EveryCutReadsTheCompleteChunksBeforeIt) {
  TempDir dir;
  const std::string path = dir.file("a.gst");
  const Sample s = write_sample(path, 32, 400);
  const std::string bytes = slurp(path);
  uint64_t last_events = 0;
  for (size_t cut = 1; cut <= bytes.size(); ++cut) {
    Collected c;
    ReadResult r;
    ASSERT_NO_THROW(r = read_recording_bytes(std::string_view(bytes).substr(0, cut), c)) << cut;
    expect_events_prefix(s, c);
    EXPECT_GE(r.events, last_events) << cut;  // a longer prefix never reads less
    last_events = r.events;
    EXPECT_EQ(r.corrupt_chunks, 0u) << cut;
    EXPECT_EQ(r.truncated, cut < bytes.size()) << cut;
    EXPECT_EQ(r.complete, cut == bytes.size()) << cut;
    // A cut inside a chunk is a problem of its own; a cut between chunks is
    // said by `truncated` alone.
    if (r.tail_bytes) {
      EXPECT_FALSE(r.problems.empty()) << cut;
    }
  }
  EXPECT_EQ(last_events, 400u);
}

TEST(Recording, AnEmptyFileOrAnotherFormatIsRefused) {
  Collected c;
  EXPECT_THROW(read_recording_bytes("", c), Error);
  EXPECT_THROW(read_recording_bytes("GILSTAT1 not a recording", c), Error);
  EXPECT_THROW(read_recording_bytes("\x7f"
                                    "ELF",
                                    c),
               Error);
  EXPECT_THROW(read_recording("/nonexistent/x.gst", c), Error);
}

std::string with_version(std::string bytes, uint32_t version) {
  for (int i = 0; i < 4; ++i) bytes[8 + i] = static_cast<char>(version >> (8 * i));
  return bytes;
}

TEST(Recording, ANewerFormatIsRefusedWithAPlainMessage) {
  TempDir dir;
  const std::string path = dir.file("a.gst");
  write_sample(path);
  const std::string bytes = slurp(path);
  Collected c;
  try {
    read_recording_bytes(with_version(bytes, kRecordingVersion + 1), c);
    FAIL() << "a newer format was read";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("newer"), std::string::npos) << e.what();
    EXPECT_EQ(e.exit_code(), kExitRuntime);
  }
  EXPECT_THROW(read_recording_bytes(with_version(bytes, 1), c), Error);
  EXPECT_EQ(c.event_count, 0u);  // refused before reading anything
}

// Offsets of the chunks of a file (parsed independently of the reader).
std::vector<size_t> chunk_offsets(const std::string& bytes) {
  std::vector<size_t> out;
  const uint32_t header_len = static_cast<uint8_t>(bytes[12]) |
                              static_cast<uint8_t>(bytes[13]) << 8 |
                              static_cast<uint8_t>(bytes[14]) << 16 |
                              static_cast<uint32_t>(static_cast<uint8_t>(bytes[15])) << 24;
  size_t pos = 16 + header_len + 4;
  while (pos + kChunkHeaderSize <= bytes.size()) {
    out.push_back(pos);
    uint32_t len = 0;
    for (int i = 0; i < 4; ++i)
      len |= uint32_t{static_cast<uint8_t>(bytes[pos + 4 + i])} << (8 * i);
    pos += kChunkHeaderSize + len;
  }
  return out;
}

TEST(Recording, ADamagedChunkIsSkippedAndTheRestIsRead) {
  TempDir dir;
  const std::string path = dir.file("a.gst");
  const Sample s = write_sample(path, 64, 1000);
  const std::string good = slurp(path);
  const std::vector<size_t> chunks = chunk_offsets(good);
  ASSERT_GT(chunks.size(), 6u);
  Collected all;
  const ReadResult whole = read_recording_bytes(good, all);

  // A flipped payload byte (CRC mismatch), a flipped header byte (the
  // reader resyncs on the next chunk), bytes inserted between chunks.
  const auto check = [&](const std::string& bytes, const char* what) {
    Collected c;
    const ReadResult r = read_recording_bytes(bytes, c);
    EXPECT_EQ(r.corrupt_chunks, 1u) << what;
    EXPECT_GT(r.skipped_bytes, 0u) << what;
    EXPECT_FALSE(r.problems.empty()) << what;
    EXPECT_LT(r.events, whole.events) << what;
    EXPECT_GT(r.events, whole.events / 2) << what;
    EXPECT_TRUE(r.complete) << what;  // the End chunk after the damage was read
    EXPECT_EQ(c.ends.size(), 1u) << what;
  };
  std::string payload_flip = good;
  payload_flip[chunks[3] + kChunkHeaderSize + 5] ^= 0x40;
  check(payload_flip, "payload");
  std::string header_flip = good;
  header_flip[chunks[3] + 5] ^= 0x01;
  check(header_flip, "header");
  std::string sync_flip = good;
  sync_flip[chunks[3]] = 'X';
  check(sync_flip, "sync");

  std::string inserted = good;
  const std::string garbage = "garbage between chunks, GCHK and all";
  inserted.insert(chunks[4], garbage);
  Collected c;
  const ReadResult r = read_recording_bytes(inserted, c);
  EXPECT_EQ(r.events, whole.events);  // nothing lost, only skipped
  EXPECT_EQ(r.corrupt_chunks, 1u);
  EXPECT_EQ(r.skipped_bytes, garbage.size());
  expect_events_prefix(s, c);
}

TEST(Recording, BadCompressedDataIsReportedNotFatal) {
  TempDir dir;
  const std::string path = dir.file("a.gst");
  write_sample(path, 64, 300);
  std::string bytes = slurp(path);
  const std::vector<size_t> chunks = chunk_offsets(bytes);
  // Garbage inside a zstd chunk with a CRC that matches it: only the
  // decompressor can tell.
  const size_t at = chunks[1];
  ASSERT_EQ(bytes[at + 16], 1) << "expected a zstd chunk";
  uint32_t len = 0;
  for (int i = 0; i < 4; ++i) len |= uint32_t{static_cast<uint8_t>(bytes[at + 4 + i])} << (8 * i);
  for (uint32_t i = 8; i < len; ++i) bytes[at + kChunkHeaderSize + i] = static_cast<char>(i * 7);
  const auto put32 = [&](size_t off, uint32_t v) {
    for (int i = 0; i < 4; ++i) bytes[off + i] = static_cast<char>(v >> (8 * i));
  };
  put32(at + 12, crc32c(bytes.data() + at + kChunkHeaderSize, len));
  put32(at + 20, crc32c(bytes.data() + at, 20));
  Collected c;
  const ReadResult r = read_recording_bytes(bytes, c);
  EXPECT_EQ(r.corrupt_chunks, 1u);
  ASSERT_FALSE(r.problems.empty());
  EXPECT_NE(r.problems[0].find("decompress"), std::string::npos) << r.problems[0];
  EXPECT_TRUE(r.complete);
}

TEST(Recording, RandomDamageNeverCrashes) {
  TempDir dir;
  const std::string path = dir.file("a.gst");
  write_sample(path, 50, 600);
  const std::string good = slurp(path);
  std::mt19937_64 rng(99);
  for (int round = 0; round < 2000; ++round) {
    std::string bytes = good;
    const int flips = 1 + static_cast<int>(rng() % 8);
    for (int i = 0; i < flips; ++i)
      bytes[12 + rng() % (bytes.size() - 12)] ^= static_cast<char>(1 + rng() % 255);
    if (round % 3 == 0) bytes.resize(12 + rng() % (bytes.size() - 12));
    Collected c;
    ASSERT_NO_THROW(read_recording_bytes(bytes, c)) << round;
  }
}

TEST(Recording, MalformedRecordsInAChunkAreRejected) {
  ReadResult r;
  Collected c;
  // type Events, claimed length beyond the payload
  EXPECT_FALSE(parse_chunk_payload(std::string("\x02\x10\x01", 3), c, r));
  // an Events body whose columns do not add up
  ByteSink body;
  body.varint(1);  // tid
  body.varint(0);  // flags
  body.varint(2);  // n
  body.varint(5);  // ts bytes (more than present)
  body.varint(0);
  body.varint(0);
  body.bytes("\x01\x02\x00\x00");
  ByteSink rec;
  rec.varint(2);
  rec.varint(body.size());
  rec.bytes(body.data());
  EXPECT_FALSE(parse_chunk_payload(rec.data(), c, r));
  // unknown record types are skipped by length
  EXPECT_TRUE(parse_chunk_payload(std::string("\x63\x02xy", 4), c, r));
  // a varint longer than 64 bits
  EXPECT_FALSE(parse_chunk_payload(
      std::string("\x07\x0b\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f\x00", 13), c, r));
  EXPECT_EQ(c.event_count, 0u);
}

TEST(Recording, TheWriterFlushesOnATimer) {
  TempDir dir;
  const std::string path = dir.file("a.gst");
  WriterOptions opts;
  opts.flush_interval_ns = 20'000'000;
  RecordingWriter w(path, {}, opts);
  EXPECT_FALSE(w.flush_due());  // nothing pending
  w.event(1, 0, Event{1, 0, 0, 1, 0, 0});
  const uint64_t before = w.bytes();
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  ASSERT_TRUE(w.flush_due());
  w.flush();
  EXPECT_GT(w.bytes(), before);
  // What is on disk now reads back without the writer closing.
  Collected c;
  const ReadResult r = read_recording(path, c);
  EXPECT_EQ(r.events, 1u);
  EXPECT_TRUE(r.truncated);
  w.close();
}

TEST(Recording, CodecPrimitives) {
  for (int64_t v : {int64_t{0}, int64_t{-1}, int64_t{1}, INT64_MIN, INT64_MAX})
    EXPECT_EQ(unzigzag(zigzag(v)), v);
  ByteSink s;
  for (uint64_t v : {uint64_t{0}, uint64_t{127}, uint64_t{128}, UINT64_MAX}) s.varint(v);
  ByteCursor c(s.data());
  EXPECT_EQ(c.varint(), 0u);
  EXPECT_EQ(c.varint(), 127u);
  EXPECT_EQ(c.varint(), 128u);
  EXPECT_EQ(c.varint(), UINT64_MAX);
  EXPECT_TRUE(c.ok());
  EXPECT_EQ(c.varint(), 0u);  // past the end
  EXPECT_FALSE(c.ok());
  // The CRC-32C check value.
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(crc32c("12345", 5, crc32c("", 0)), crc32c("12345", 5));
  EXPECT_EQ(crc32c("6789", 4, crc32c("12345", 5)), 0xE3069283u);
}

struct ModulesSeen : RecordingVisitor {
  std::vector<RecModule> modules;
  uint64_t not_hooked = 0;
  void on_module(const RecModule& m, uint64_t n) override {
    modules.push_back(m);
    not_hooked = n;
  }
};

TEST(Recording, ModuleRecordsRoundTripAndOldFilesHaveNone) {
  TempDir dir;
  const std::string path = dir.file("m.gst");
  RecModule a{"/x/_demo.so", 1, 16, 4000, 16, 90, 2, 7, 2, 11};
  RecModule b{"/y/closed.so", 2, 0, 0, 0, 0, 0, 0, 0, 0};
  {
    RecMeta m;
    m.pid = 7;
    RecordingWriter w(path, m);
    w.meta(m);
    w.module(a, 3);
    w.module(b, 3);
    w.end({1000, 1.0, 0, true});
  }
  ModulesSeen seen;
  read_recording(path, seen);
  ASSERT_EQ(seen.modules.size(), 2u);
  EXPECT_EQ(seen.modules[0], a);
  EXPECT_EQ(seen.modules[1], b);
  EXPECT_EQ(seen.not_hooked, 3u);
  // A recording written before the type existed: no module record, no table.
  const std::string old = dir.file("a.gst");
  write_sample(old);
  ModulesSeen none;
  read_recording(old, none);
  EXPECT_TRUE(none.modules.empty());
}

}  // namespace
}  // namespace gilstat::proto

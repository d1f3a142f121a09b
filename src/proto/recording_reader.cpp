// Reading a recording (format in recording.hpp).  Everything in the file is
// untrusted: every length and count is bounded before use, and damage is
// skipped and described, never an exception.
#include <fcntl.h>
#include <fmt/core.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/error.hpp"
#include "proto/recording.hpp"
#include "proto/recording_format.hpp"

namespace gilstat::proto {
namespace {

using namespace format;

// Decoded events are handed over in batches of this many.
constexpr size_t kBatch = 256;

// Where the bytes come from: a file (pread, nothing kept) or memory.
class Source {
 public:
  virtual ~Source() = default;
  virtual uint64_t size() const = 0;
  // The n bytes at offset (the caller checked they exist); may use scratch.
  virtual std::string_view get(uint64_t offset, size_t n, std::string& scratch) = 0;
};

class MemorySource : public Source {
 public:
  explicit MemorySource(std::string_view bytes) : bytes_(bytes) {}
  uint64_t size() const override { return bytes_.size(); }
  std::string_view get(uint64_t offset, size_t n, std::string&) override {
    return bytes_.substr(offset, n);
  }

 private:
  std::string_view bytes_;
};

class FileSource : public Source {
 public:
  FileSource(int fd, uint64_t size, std::string path)
      : fd_(fd), size_(size), path_(std::move(path)) {}
  uint64_t size() const override { return size_; }
  std::string_view get(uint64_t offset, size_t n, std::string& scratch) override {
    scratch.resize(n);
    size_t done = 0;
    while (done < n) {
      const ssize_t r =
          pread(fd_, scratch.data() + done, n - done, static_cast<off_t>(offset + done));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) throw Error(fmt::format("cannot read {}: {}", path_, std::strerror(errno)));
      if (r == 0) {  // the file shrank under us: what is missing reads as zeros
        std::fill(scratch.begin() + static_cast<long>(done), scratch.end(), '\0');
        break;
      }
      done += static_cast<size_t>(r);
    }
    return scratch;
  }

 private:
  int fd_;
  uint64_t size_;
  std::string path_;
};

void problem(ReadResult& r, std::string text) {
  ++r.problem_count;
  if (r.problems.size() < ReadResult::kMaxProblems) r.problems.push_back(std::move(text));
}

struct ChunkHeader {
  uint32_t stored_len;
  uint32_t raw_len;
  uint32_t payload_crc;
  uint8_t codec;
};

bool parse_chunk_header(std::string_view h, ChunkHeader& out) {
  if (h.size() < kChunkHeaderSize || std::memcmp(h.data(), kChunkSync, 4) != 0) return false;
  ByteCursor c(h);
  c.bytes(4);
  out.stored_len = c.le32();
  out.raw_len = c.le32();
  out.payload_crc = c.le32();
  out.codec = c.u8();
  c.bytes(3);
  const uint32_t crc = c.le32();
  return c.ok() && crc == crc32c(h.data(), 20) && out.stored_len <= kMaxChunkBytes &&
         out.raw_len <= kMaxChunkBytes;
}

// The offset of the next plausible chunk header at or after `from`, or the
// file size when there is none.
uint64_t resync(Source& src, uint64_t from, std::string& scratch) {
  const uint64_t size = src.size();
  constexpr size_t kWindow = 1 << 16;
  std::string header_scratch;
  for (uint64_t base = from; base < size;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kWindow, size - base));
    const std::string_view window = src.get(base, n, scratch);
    for (size_t i = 0; i + 4 <= window.size(); ++i) {
      if (std::memcmp(window.data() + i, kChunkSync, 4) != 0) continue;
      const uint64_t at = base + i;
      if (size - at < kChunkHeaderSize) return size;
      ChunkHeader h;
      if (parse_chunk_header(src.get(at, kChunkHeaderSize, header_scratch), h)) return at;
    }
    if (n < 4) break;
    base += n - 3;  // a sync word may straddle two windows
  }
  return size;
}

bool parse_events(ByteCursor c, RecordingVisitor& v, ReadResult& r) {
  const auto tid = static_cast<uint32_t>(c.varint_max(UINT32_MAX));
  const auto flags = static_cast<uint32_t>(c.varint_max(UINT32_MAX));
  const uint64_t n = c.varint_max(c.remaining() / 2);
  const uint64_t ts_bytes = c.varint_max(c.remaining());
  const uint64_t seq_bytes = c.varint_max(c.remaining());
  const uint64_t value_bytes = c.varint_max(c.remaining());
  ByteCursor kinds = c.sub(n);
  ByteCursor gils = c.sub(n);
  ByteCursor ts_col = c.sub(ts_bytes);
  ByteCursor seq_col = c.sub(seq_bytes);
  ByteCursor value_col = c.sub(value_bytes);
  if (!c.ok()) return false;
  if (!v.wants_events()) {
    r.events += n;
    return true;
  }
  Event batch[kBatch];
  uint64_t prev_ts = 0;
  uint32_t prev_seq = 0;
  uint64_t mru[kValueMru] = {};
  for (uint64_t done = 0; done < n;) {
    const size_t m = static_cast<size_t>(std::min<uint64_t>(kBatch, n - done));
    // Column by column: each loop is short and predictable.  The kinds and
    // GILs were length-checked when the columns were cut (n bytes each).
    const std::string_view k = kinds.bytes(m), g = gils.bytes(m);
    for (size_t i = 0; i < m; ++i) {
      batch[i].kind = static_cast<uint8_t>(k[i]);
      batch[i].gil = static_cast<uint8_t>(g[i]);
      batch[i].reserved = 0;
    }
    for (size_t i = 0; i < m; ++i) batch[i].ts = prev_ts += static_cast<uint64_t>(ts_col.svarint());
    for (size_t i = 0; i < m; ++i) {
      const int64_t dseq = seq_col.svarint();
      if (dseq < INT32_MIN || dseq > INT32_MAX) return false;
      const bool sequenced = is_sequenced(batch[i].kind);
      batch[i].seq = (sequenced ? prev_seq + 1 : 0) + static_cast<uint32_t>(dseq);
      if (sequenced) prev_seq = batch[i].seq;
    }
    for (size_t i = 0; i < m; ++i) {
      const uint8_t tag = value_col.u8();
      uint64_t value;
      size_t at;
      if (tag < kValueMru) {
        value = mru[tag];
        at = tag;
      } else if (tag == kValueLiteral) {
        value = value_col.varint();
        at = kValueMru - 1;
      } else {
        return false;
      }
      std::copy_backward(mru, mru + at, mru + at + 1);
      mru[0] = value;
      batch[i].value = value;
    }
    if (!kinds.ok() || !gils.ok() || !ts_col.ok() || !seq_col.ok() || !value_col.ok()) return false;
    v.on_events(tid, flags, std::span<const Event>(batch, m));
    r.events += m;
    done += m;
  }
  return ts_col.at_end() && seq_col.at_end() && value_col.at_end();
}

bool parse_record(RecordType type, ByteCursor c, RecordingVisitor& v, ReadResult& r) {
  switch (type) {
    case RecordType::Meta: {
      RecMeta m;
      if (!decode_meta(c, m)) return false;
      v.on_meta(m);
      return true;
    }
    case RecordType::Events:
      return parse_events(c, v, r);
    case RecordType::Name: {
      const auto tid = static_cast<uint32_t>(c.varint_max(UINT32_MAX));
      std::string name = c.str(kMaxNameBytes);
      if (!c.ok()) return false;
      v.on_name(tid, name);
      return true;
    }
    case RecordType::Drops: {
      const auto tid = static_cast<uint32_t>(c.varint_max(UINT32_MAX));
      const uint64_t n = c.varint();
      if (!c.ok()) return false;
      v.on_drops(tid, n);
      return true;
    }
    case RecordType::Gil: {
      RecGil g;
      g.index = static_cast<uint32_t>(c.varint_max(UINT8_MAX));  // Event::gil is a u8
      g.address = c.varint();
      g.initial_switch_number = c.varint();
      g.final_switch_number = c.varint();
      g.initial_holder = c.varint();
      const uint64_t n = c.varint_max(64);
      for (uint64_t i = 0; i < n && c.ok(); ++i) g.interp_ids.push_back(c.svarint());
      if (!c.ok()) return false;
      if (!c.at_end()) {  // appended: the probe's counters
        g.counters = c.varint() & 1;
        g.acquisitions = c.varint();
        g.switches = c.varint();
        g.drop_requests = c.varint();
        if (!c.ok()) return false;
      }
      if (!c.at_end()) {  // appended: the state at the arm
        g.arm_ts = c.varint();
        const uint64_t m = c.varint_max(kMaxArmStates);
        for (uint64_t i = 0; i < m && c.ok(); ++i) {
          const auto tid = static_cast<uint32_t>(c.varint_max(UINT32_MAX));
          const auto role = static_cast<uint8_t>(c.varint_max(2));
          g.at_arm.emplace_back(tid, role);
        }
        if (!c.ok()) return false;
      }
      v.on_gil(g);
      return true;
    }
    case RecordType::End: {
      RecEnd e;
      e.window_end = c.varint();
      e.ns_per_tick = c.f64();
      e.drops_no_ring = c.varint();
      if (!c.ok()) return false;
      if (!c.at_end()) {
        e.totals_exact = c.varint() & 1;
        if (!c.ok()) return false;
      }
      v.on_end(e);
      r.complete = true;
      return true;
    }
    case RecordType::Totals: {
      RecTotals t;
      t.tid = static_cast<uint32_t>(c.varint_max(UINT32_MAX));
      t.ring_flags = static_cast<uint32_t>(c.varint_max(UINT32_MAX));
      t.gil = static_cast<uint32_t>(c.varint_max(kMaxGils - 1));
      t.lifetime = c.varint();
      t.held = c.varint();
      t.wait = c.varint();
      t.released = c.varint();
      t.acquisitions = c.varint();
      t.forced_handoffs = c.varint();
      if (!c.ok()) return false;
      v.on_totals(t);
      return true;
    }
    case RecordType::HostIds: {
      const int64_t host_pid = c.svarint();
      const uint64_t n = c.varint_max(kMaxHostIdPairs);
      std::vector<TidPair> pairs;
      for (uint64_t i = 0; i < n && c.ok(); ++i) {
        const auto tid = static_cast<uint32_t>(c.varint_max(UINT32_MAX));
        const auto host = static_cast<uint32_t>(c.varint_max(UINT32_MAX));
        pairs.emplace_back(tid, host);
      }
      if (!c.ok() || host_pid <= 0 || host_pid > INT32_MAX) return false;
      v.on_host_ids(static_cast<int32_t>(host_pid), pairs);
      return true;
    }
    case RecordType::Frame: {
      const auto id = static_cast<uint32_t>(c.varint_max(stacks::kMaxFrames - 1));
      stacks::Frame f;
      const uint64_t kind = c.varint_max(2);
      f.function = c.str(stacks::kMaxFrameText);
      f.file = c.str(stacks::kMaxFrameText);
      f.line = static_cast<uint32_t>(c.varint_max(UINT32_MAX));
      f.object = c.str(stacks::kMaxFrameText);
      f.offset = c.varint();
      if (!c.ok() || kind == 0) return false;
      f.kind = static_cast<stacks::FrameKind>(kind);
      v.on_frame(id, f);
      return true;
    }
    case RecordType::Stack: {
      const auto id = static_cast<uint32_t>(c.varint_max(stacks::kMaxStacks - 1));
      const uint64_t n = c.varint_max(stacks::kMaxDepth);
      std::vector<uint32_t> ids;
      for (uint64_t i = 0; i < n && c.ok(); ++i)
        ids.push_back(static_cast<uint32_t>(c.varint_max(stacks::kMaxFrames - 1)));
      if (!c.ok()) return false;
      v.on_stack(id, ids);
      return true;
    }
    case RecordType::Sample: {
      stacks::Sample s;
      s.tid = static_cast<uint32_t>(c.varint_max(UINT32_MAX));
      s.gil = static_cast<uint32_t>(c.varint_max(UINT8_MAX));
      s.ts = c.varint();
      s.stack = static_cast<uint32_t>(c.varint_max(stacks::kMaxStacks - 1));
      const uint64_t reason = c.varint_max(2);
      s.hold_start = c.varint();
      if (!c.ok() || reason == 0) return false;
      s.reason = static_cast<stacks::SampleReason>(reason);
      v.on_sample(s);
      return true;
    }
    case RecordType::Module: {
      RecModule m;
      m.path = c.str(kMaxNameBytes);
      m.state = static_cast<uint32_t>(c.varint_max(UINT32_MAX));
      for (uint64_t* f : {&m.releases, &m.released, &m.restores, &m.restore_wait, &m.ensures,
                          &m.ensure_wait, &m.gil_releases, &m.callback_held})
        *f = c.varint();
      const uint64_t not_hooked = c.varint();
      if (!c.ok()) return false;
      v.on_module(m, not_hooked);
      return true;
    }
    case RecordType::Clock: {
      RecClock k;
      k.raw = c.varint();
      k.mono_ns = c.varint();
      k.drops_no_ring = c.varint();
      if (!c.ok()) return false;
      v.on_clock(k);
      return true;
    }
  }
  return true;  // a record type from a later writer of this version: skipped
}

std::string kib(uint64_t bytes) { return fmt::format("{:.1f} KiB", bytes / 1024.0); }

ReadResult read_source(Source& src, const std::string& what, RecordingVisitor& v) {
  ReadResult r;
  const uint64_t size = src.size();
  r.file_size = size;
  std::string scratch;
  if (size == 0)
    throw Error(fmt::format("{} is empty, not a gilstat recording", what),
                "record one with `gilstat record -o FILE -- python3 app.py`");
  const size_t head = static_cast<size_t>(std::min<uint64_t>(size, 16));
  const std::string start(src.get(0, head, scratch));
  if (std::memcmp(start.data(), kRecordingMagic, std::min<size_t>(head, 8)) != 0)
    throw Error(fmt::format("{} is not a gilstat recording", what),
                "record one with `gilstat record -o FILE -- python3 app.py`");
  if (head < 12) {  // cut off inside the magic or the version
    r.truncated = true;
    r.tail_bytes = size;
    problem(r, "the file ends inside its header");
    return r;
  }
  ByteCursor hc(start);
  hc.bytes(8);
  r.format_version = hc.le32();
  if (r.format_version > kRecordingVersion)
    throw Error(fmt::format("{} uses recording format {}, newer than this gilstat reads ({})", what,
                            r.format_version, kRecordingVersion),
                "read it with a newer gilstat");
  if (r.format_version < kRecordingVersion)
    throw Error(fmt::format("{} uses recording format {}, which this gilstat no longer reads", what,
                            r.format_version),
                "record it again");

  uint64_t pos = 12;
  if (size < 16) {
    r.truncated = true;
    r.tail_bytes = size - 12;
    problem(r, "the file ends inside its header");
    return r;
  }
  const uint32_t header_len = hc.le32();
  pos = 16;
  if (header_len > kMaxHeaderBytes) {
    problem(r, fmt::format("the file header claims {} bytes: damaged, skipped", header_len));
  } else if (uint64_t{16} + header_len + 4 > size) {
    r.truncated = true;
    r.tail_bytes = size - 12;
    problem(r, "the file ends inside its header");
    return r;
  } else {
    const std::string_view h = src.get(8, 8 + header_len + 4, scratch);
    ByteCursor c(h.substr(8 + header_len));
    const uint32_t crc = c.le32();
    RecMeta meta;
    if (crc == crc32c(h.data(), 8 + header_len) &&
        decode_meta(ByteCursor(h.substr(8, header_len)), meta)) {
      r.header_ok = true;
      v.on_header(meta);
    } else {
      problem(r, "the file header is damaged (CRC mismatch): skipped");
    }
    pos = 16 + uint64_t{header_len} + 4;
  }

  std::string payload_scratch, raw;
  ZSTD_DCtx* dctx = nullptr;
  struct Free {
    ZSTD_DCtx*& p;
    ~Free() { ZSTD_freeDCtx(p); }
  } free_dctx{dctx};
  bool resyncing = false;  // a damaged stretch is being skipped: one problem line for it
  uint64_t damaged_from = 0;
  const auto damaged = [&](uint64_t from, uint64_t to) {
    r.skipped_bytes += to - from;
    problem(r, fmt::format("bytes {}..{} are not a readable chunk: skipped ({})", from, to,
                           kib(to - from)));
  };
  while (pos < size) {
    if (size - pos < kChunkHeaderSize) {
      r.tail_bytes = size - pos;
      break;
    }
    ChunkHeader h;
    if (!parse_chunk_header(src.get(pos, kChunkHeaderSize, scratch), h)) {
      if (!resyncing) {
        resyncing = true;
        damaged_from = pos;
        ++r.corrupt_chunks;
      }
      pos = resync(src, pos + 1, scratch);
      continue;
    }
    if (resyncing) {
      damaged(damaged_from, pos);
      resyncing = false;
    }
    const uint64_t chunk_at = pos;
    if (h.stored_len > size - pos - kChunkHeaderSize) {
      r.tail_bytes = size - pos;  // the last chunk was being written
      break;
    }
    pos += kChunkHeaderSize + h.stored_len;
    const std::string_view stored =
        src.get(chunk_at + kChunkHeaderSize, h.stored_len, payload_scratch);
    const auto bad_chunk = [&](const std::string& why) {
      ++r.corrupt_chunks;
      r.skipped_bytes += kChunkHeaderSize + h.stored_len;
      problem(r, fmt::format("chunk at byte {} ({}): {}; skipped", chunk_at,
                             kib(kChunkHeaderSize + h.stored_len), why));
    };
    if (crc32c(stored.data(), stored.size()) != h.payload_crc) {
      bad_chunk("CRC mismatch");
      continue;
    }
    std::string_view payload;
    if (h.codec == kCodecNone) {
      if (h.raw_len != h.stored_len) {
        bad_chunk("inconsistent lengths");
        continue;
      }
      payload = stored;
    } else if (h.codec == kCodecZstd) {
      const unsigned long long content = ZSTD_getFrameContentSize(stored.data(), stored.size());
      if (content != h.raw_len) {
        bad_chunk("zstd frame does not match the chunk header");
        continue;
      }
      if (!dctx) dctx = ZSTD_createDCtx();
      raw.resize(h.raw_len);
      const size_t got =
          ZSTD_decompressDCtx(dctx, raw.data(), raw.size(), stored.data(), stored.size());
      if (ZSTD_isError(got) || got != h.raw_len) {
        bad_chunk(ZSTD_isError(got) ? fmt::format("cannot decompress ({})", ZSTD_getErrorName(got))
                                    : std::string("decompressed size differs"));
        continue;
      }
      payload = raw;
    } else {
      bad_chunk(fmt::format("unknown codec {}", h.codec));
      continue;
    }
    if (!parse_chunk_payload(payload, v, r)) {
      ++r.corrupt_chunks;
      problem(r,
              fmt::format("chunk at byte {}: malformed records; the rest of it skipped", chunk_at));
      continue;
    }
    ++r.chunks;
  }
  if (resyncing) damaged(damaged_from, size);
  r.truncated = !r.complete;
  if (r.tail_bytes)
    problem(r, fmt::format("the last {} are an incomplete chunk (the writer was stopped while "
                           "writing it)",
                           kib(r.tail_bytes)));
  // A file that simply ends between chunks is described by `truncated`
  // alone: a problem line would say the same thing twice.
  return r;
}

}  // namespace

bool parse_chunk_payload(std::string_view payload, RecordingVisitor& v, ReadResult& r) {
  ByteCursor c(payload);
  while (!c.at_end()) {
    const uint64_t type = c.varint();
    const uint64_t len = c.varint_max(c.remaining());
    ByteCursor body = c.sub(len);
    if (!c.ok()) return false;
    if (type > UINT8_MAX) continue;
    if (!parse_record(static_cast<RecordType>(type), body, v, r)) return false;
  }
  return true;
}

ReadResult read_recording_bytes(std::string_view bytes, RecordingVisitor& visitor) {
  MemorySource src(bytes);
  return read_source(src, "the recording", visitor);
}

ReadResult read_recording(const std::string& path, RecordingVisitor& visitor) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    throw Error(fmt::format("cannot open {}: {}", path, std::strerror(errno)), {},
                errno == EACCES ? kExitPermission : kExitRuntime);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
    throw Error(fmt::format("{} is not a regular file", path));
  FileSource src(fd, static_cast<uint64_t>(st.st_size), path);
  return read_source(src, path, visitor);
}
}  // namespace gilstat::proto

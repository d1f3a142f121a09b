// Writing a recording (format in recording.hpp): chunks flushed with one
// write(2) each, so that a killed writer leaves a file that reads up to its
// last complete chunk.
#include <fcntl.h>
#include <fmt/core.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/error.hpp"
#include "gilstat/version.hpp"
#include "proto/recording.hpp"
#include "proto/recording_format.hpp"

namespace gilstat::proto {
namespace {

using namespace format;

uint64_t clock_ns(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace

struct RecordingWriter::ZstdCtx {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ~ZstdCtx() { ZSTD_freeCCtx(cctx); }
};

RecordingWriter::RecordingWriter(const std::string& path, const RecMeta& header,
                                 const WriterOptions& options)
    : path_(path), options_(options), zstd_(std::make_unique<ZstdCtx>()) {
  if (options_.chunk_events == 0) options_.chunk_events = 1;
  fd_ = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0)
    throw Error(fmt::format("cannot create {}: {}", path, std::strerror(errno)),
                "check the directory exists and is writable",
                errno == EACCES ? kExitPermission : kExitRuntime);
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) == 0) host_ = host;
  start_unix_ns_ = clock_ns(CLOCK_REALTIME);
  start_mono_ns_ = clock_ns(CLOCK_MONOTONIC);
  last_flush_ns_ = start_mono_ns_;

  RecMeta m = header;
  complete_meta(m);
  ByteSink body;
  encode_meta(body, m);
  ByteSink file;
  file.bytes(std::string_view(kRecordingMagic, sizeof(kRecordingMagic)));
  file.le32(kRecordingVersion);
  file.le32(static_cast<uint32_t>(body.size()));
  file.bytes(body.data());
  file.le32(crc32c(file.data().data() + 8, file.size() - 8));
  write_all(file.data().data(), file.size());
  if (write_errno_) {
    const int err = write_errno_;
    ::close(fd_);
    fd_ = -1;
    throw Error(fmt::format("cannot write {}: {}", path, std::strerror(err)), "is the disk full?");
  }
}

RecordingWriter::~RecordingWriter() {
  if (fd_ >= 0) {
    try {
      flush();
    } catch (...) {
    }
    ::close(fd_);
  }
}

void RecordingWriter::complete_meta(RecMeta& m) const {
  if (m.gilstat_version.empty()) m.gilstat_version = kVersion;
  if (m.host.empty()) m.host = host_;
  if (!m.start_unix_ns) m.start_unix_ns = start_unix_ns_;
  if (!m.start_mono_ns) m.start_mono_ns = start_mono_ns_;
}

void RecordingWriter::begin_record(RecordType type, const ByteSink& body) {
  records_.varint(static_cast<uint8_t>(type));
  records_.varint(body.size());
  records_.bytes(body.data());
}

void RecordingWriter::meta(const RecMeta& meta) {
  RecMeta m = meta;
  complete_meta(m);
  body_.clear();
  encode_meta(body_, m);
  begin_record(RecordType::Meta, body_);
}

void RecordingWriter::event(uint32_t tid, uint32_t flags, const Event& ev) {
  const uint64_t key = uint64_t{tid} << 32 | flags;
  if (last_block_ == SIZE_MAX || key != last_block_key_) {
    auto [it, inserted] = block_index_.try_emplace(key, blocks_.size());
    if (inserted) blocks_.push_back(Block{tid, flags, {}});
    last_block_ = it->second;
    last_block_key_ = key;
  }
  blocks_[last_block_].events.push_back(ev);
  ++events_;
  if (++pending_events_ >= options_.chunk_events) flush();
}

void RecordingWriter::name(uint32_t tid, const std::string& name) {
  body_.clear();
  body_.varint(tid);
  body_.str(std::string_view(name).substr(0, kMaxNameBytes));
  begin_record(RecordType::Name, body_);
}

void RecordingWriter::host_ids(int32_t host_pid, std::span<const TidPair> pairs) {
  while (true) {
    const auto n = std::min<size_t>(pairs.size(), kMaxHostIdPairs);
    body_.clear();
    body_.svarint(host_pid);
    body_.varint(n);
    for (size_t i = 0; i < n; ++i) {
      body_.varint(pairs[i].first);
      body_.varint(pairs[i].second);
    }
    begin_record(RecordType::HostIds, body_);
    pairs = pairs.subspan(n);
    if (pairs.empty()) return;
  }
}

void RecordingWriter::frame(uint32_t id, const stacks::Frame& f) {
  body_.clear();
  body_.varint(id);
  body_.varint(static_cast<uint8_t>(f.kind));
  body_.str(std::string_view(f.function).substr(0, stacks::kMaxFrameText));
  body_.str(std::string_view(f.file).substr(0, stacks::kMaxFrameText));
  body_.varint(f.line);
  body_.str(std::string_view(f.object).substr(0, stacks::kMaxFrameText));
  body_.varint(f.offset);
  begin_record(RecordType::Frame, body_);
}

void RecordingWriter::stack(uint32_t id, std::span<const uint32_t> frame_ids) {
  const size_t n = std::min<size_t>(frame_ids.size(), stacks::kMaxDepth);
  body_.clear();
  body_.varint(id);
  body_.varint(n);
  for (size_t i = 0; i < n; ++i) body_.varint(frame_ids[i]);
  begin_record(RecordType::Stack, body_);
}

void RecordingWriter::sample(const stacks::Sample& s) {
  body_.clear();
  body_.varint(s.tid);
  body_.varint(s.gil);
  body_.varint(s.ts);
  body_.varint(s.stack);
  body_.varint(static_cast<uint8_t>(s.reason));
  body_.varint(s.hold_start);
  begin_record(RecordType::Sample, body_);
}

void RecordingWriter::drops(uint32_t tid, uint64_t count) {
  body_.clear();
  body_.varint(tid);
  body_.varint(count);
  begin_record(RecordType::Drops, body_);
}

void RecordingWriter::gil(const RecGil& g) {
  body_.clear();
  body_.varint(g.index);
  body_.varint(g.address);
  body_.varint(g.initial_switch_number);
  body_.varint(g.final_switch_number);
  body_.varint(g.initial_holder);
  const size_t n = std::min<size_t>(g.interp_ids.size(), 64);
  body_.varint(n);
  for (size_t i = 0; i < n; ++i) body_.svarint(g.interp_ids[i]);
  body_.varint(g.counters ? 1 : 0);
  body_.varint(g.acquisitions);
  body_.varint(g.switches);
  body_.varint(g.drop_requests);
  body_.varint(g.arm_ts);
  const size_t m = std::min<size_t>(g.at_arm.size(), kMaxArmStates);
  body_.varint(m);
  for (size_t i = 0; i < m; ++i) {
    body_.varint(g.at_arm[i].first);
    body_.varint(g.at_arm[i].second);
  }
  begin_record(RecordType::Gil, body_);
}

void RecordingWriter::totals(const RecTotals& t) {
  body_.clear();
  body_.varint(t.tid);
  body_.varint(t.ring_flags);
  body_.varint(t.gil);
  for (uint64_t v : {t.lifetime, t.held, t.wait, t.released, t.acquisitions, t.forced_handoffs})
    body_.varint(v);
  begin_record(RecordType::Totals, body_);
}

void RecordingWriter::module(const RecModule& m, uint64_t not_hooked) {
  body_.clear();
  body_.str(std::string_view(m.path).substr(0, kMaxNameBytes));
  body_.varint(m.state);
  for (uint64_t v : {m.releases, m.released, m.restores, m.restore_wait, m.ensures, m.ensure_wait,
                     m.gil_releases, m.callback_held, not_hooked})
    body_.varint(v);
  begin_record(RecordType::Module, body_);
}

void RecordingWriter::clock(const RecClock& k) {
  body_.clear();
  body_.varint(k.raw);
  body_.varint(k.mono_ns);
  body_.varint(k.drops_no_ring);
  begin_record(RecordType::Clock, body_);
}

void RecordingWriter::end(const RecEnd& e) {
  flush();  // the End record comes after every event
  body_.clear();
  body_.varint(e.window_end);
  body_.f64(e.ns_per_tick);
  body_.varint(e.drops_no_ring);
  body_.varint(e.totals_exact ? 1 : 0);
  begin_record(RecordType::End, body_);
  flush();
}

void RecordingWriter::encode_block(const Block& b) {
  ts_col_.clear();
  seq_col_.clear();
  value_col_.clear();
  uint64_t prev_ts = 0;
  uint32_t prev_seq = 0;
  uint64_t mru[kValueMru] = {};
  for (const Event& ev : b.events) {
    ts_col_.svarint(static_cast<int64_t>(ev.ts - prev_ts));
    prev_ts = ev.ts;
    const bool sequenced = is_sequenced(ev.kind);
    const uint32_t predicted = sequenced ? prev_seq + 1 : 0;
    seq_col_.svarint(static_cast<int32_t>(ev.seq - predicted));
    if (sequenced) prev_seq = ev.seq;
    size_t at = 0;
    while (at < kValueMru && mru[at] != ev.value) ++at;
    if (at < kValueMru) {
      value_col_.u8(static_cast<uint8_t>(at));
    } else {
      value_col_.u8(kValueLiteral);
      value_col_.varint(ev.value);
      at = kValueMru - 1;
    }
    std::copy_backward(mru, mru + at, mru + at + 1);
    mru[0] = ev.value;
  }
  body_.clear();
  body_.varint(b.tid);
  body_.varint(b.flags);
  body_.varint(b.events.size());
  body_.varint(ts_col_.size());
  body_.varint(seq_col_.size());
  body_.varint(value_col_.size());
  for (const Event& ev : b.events) body_.u8(ev.kind);
  for (const Event& ev : b.events) body_.u8(ev.gil);
  body_.bytes(ts_col_.data());
  body_.bytes(seq_col_.data());
  body_.bytes(value_col_.data());
  begin_record(RecordType::Events, body_);
}

bool RecordingWriter::flush_due() const {
  if (records_.size() == 0 && pending_events_ == 0) return false;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  const uint64_t now =
      static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
  return now - last_flush_ns_ >= options_.flush_interval_ns;
}

void RecordingWriter::flush() {
  last_flush_ns_ = clock_ns(CLOCK_MONOTONIC);
  if (fd_ < 0 || (records_.size() == 0 && pending_events_ == 0)) return;
  for (const Block& b : blocks_) encode_block(b);
  blocks_.clear();
  block_index_.clear();
  last_block_ = SIZE_MAX;
  pending_events_ = 0;

  const std::string& raw = records_.data();
  compressed_.resize(ZSTD_compressBound(raw.size()));
  const size_t z = ZSTD_compressCCtx(zstd_->cctx, compressed_.data(), compressed_.size(),
                                     raw.data(), raw.size(), options_.zstd_level);
  uint8_t codec = kCodecZstd;
  std::string_view stored;
  if (ZSTD_isError(z) || z >= raw.size()) {
    codec = kCodecNone;
    stored = raw;
  } else {
    stored = std::string_view(compressed_.data(), z);
  }
  ByteSink chunk;
  chunk.bytes(std::string_view(kChunkSync, 4));
  chunk.le32(static_cast<uint32_t>(stored.size()));
  chunk.le32(static_cast<uint32_t>(raw.size()));
  chunk.le32(crc32c(stored.data(), stored.size()));
  chunk.u8(codec);
  chunk.u8(0);
  chunk.u8(0);
  chunk.u8(0);
  chunk.le32(crc32c(chunk.data().data(), chunk.size()));
  chunk.bytes(stored);
  records_.clear();
  write_all(chunk.data().data(), chunk.size());
  ++chunks_;
}

void RecordingWriter::write_all(const char* data, size_t size) {
  if (write_errno_) return;  // the first error stands; close() reports it
  while (size > 0) {
    const ssize_t n = ::write(fd_, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      write_errno_ = errno;
      return;
    }
    data += n;
    size -= static_cast<size_t>(n);
    bytes_ += static_cast<uint64_t>(n);
  }
}

void RecordingWriter::close() {
  if (fd_ < 0) return;
  flush();
  const int fd = fd_;
  fd_ = -1;
  const bool close_failed = ::close(fd) != 0;
  if (write_errno_ || close_failed)
    throw Error(fmt::format("error while writing {}: {}", path_,
                            std::strerror(write_errno_ ? write_errno_ : errno)),
                "is the disk full?");
}

}  // namespace gilstat::proto

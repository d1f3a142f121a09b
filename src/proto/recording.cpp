#include "proto/recording.hpp"

#include <fmt/core.h>

#include <cerrno>
#include <cstring>
#include <limits>

#include "common/error.hpp"

namespace gilstat::proto {
namespace {

enum RecordType : uint8_t { kMeta = 1, kEvent = 2, kName = 3, kDrops = 4, kGil = 5, kEnd = 6 };

// Payloads are built in a std::string and parsed with a bounds-checked
// cursor: a recording is untrusted input.
template <typename T>
void put(std::string& out, T value) {
  out.append(reinterpret_cast<const char*>(&value), sizeof(value));
}
void put_str(std::string& out, const std::string& s) {
  put<uint32_t>(out, static_cast<uint32_t>(s.size()));
  out += s;
}

class Cursor {
 public:
  Cursor(const char* data, size_t size) : data_(data), size_(size) {}
  template <typename T>
  T get() {
    T value;
    need(sizeof(T));
    std::memcpy(&value, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return value;
  }
  std::string get_str() {
    const uint32_t n = get<uint32_t>();
    need(n);
    std::string s(data_ + pos_, n);
    pos_ += n;
    return s;
  }

 private:
  void need(size_t n) const {
    if (n > size_ - pos_) throw Error("corrupt recording: a record is shorter than its contents");
  }
  const char* data_;
  size_t size_;
  size_t pos_ = 0;
};

}  // namespace

RecordingWriter::RecordingWriter(const std::string& path) : path_(path) {
  file_ = std::fopen(path.c_str(), "wb");
  if (!file_)
    throw Error(fmt::format("cannot create {}: {}", path, std::strerror(errno)),
                "check the directory exists and is writable",
                errno == EACCES ? kExitPermission : kExitRuntime);
  std::fwrite(kRecordingMagic, 1, sizeof(kRecordingMagic), file_);
  const uint32_t version = kRecordingVersion;
  std::fwrite(&version, sizeof(version), 1, file_);
  bytes_ = sizeof(kRecordingMagic) + sizeof(version);
}

RecordingWriter::~RecordingWriter() {
  if (file_) std::fclose(file_);
}

void RecordingWriter::record(uint8_t type, const std::string& payload) {
  const uint32_t len = static_cast<uint32_t>(payload.size());
  std::fwrite(&type, 1, 1, file_);
  std::fwrite(&len, sizeof(len), 1, file_);
  std::fwrite(payload.data(), 1, payload.size(), file_);
  bytes_ += 1 + sizeof(len) + payload.size();
}

void RecordingWriter::meta(const RecMeta& m) {
  std::string p;
  put<int32_t>(p, m.pid);
  put<uint32_t>(p, static_cast<uint32_t>(m.clock));
  put<uint32_t>(p, m.py_version_hex);
  put<uint8_t>(p, m.free_threaded);
  put<uint8_t>(p, m.libpython_shared);
  put<uint64_t>(p, m.window_start);
  put_str(p, m.gilstat_version);
  put_str(p, m.py_version);
  put_str(p, m.command);
  record(kMeta, p);
}

void RecordingWriter::event(uint32_t tid, uint32_t flags, const Event& ev) {
  std::string p;
  put(p, tid);
  put(p, flags);
  put(p, ev);
  record(kEvent, p);
}

void RecordingWriter::name(uint32_t tid, const std::string& name) {
  std::string p;
  put(p, tid);
  put_str(p, name);
  record(kName, p);
}

void RecordingWriter::drops(uint32_t tid, uint64_t count) {
  std::string p;
  put(p, tid);
  put(p, count);
  record(kDrops, p);
}

void RecordingWriter::gil(const RecGil& gil) {
  std::string p;
  put(p, gil.index);
  put(p, gil.address);
  put(p, gil.initial_switch_number);
  put(p, gil.final_switch_number);
  put(p, gil.initial_holder);
  put<uint32_t>(p, static_cast<uint32_t>(gil.interp_ids.size()));
  for (int64_t id : gil.interp_ids) put(p, id);
  record(kGil, p);
}

void RecordingWriter::end(const RecEnd& end) {
  std::string p;
  put(p, end.window_end);
  put(p, end.ns_per_tick);
  put(p, end.drops_no_ring);
  record(kEnd, p);
}

void RecordingWriter::close() {
  if (!file_) return;
  const bool failed = std::ferror(file_) != 0;
  const bool close_failed = std::fclose(file_) != 0;
  file_ = nullptr;
  if (failed || close_failed)
    throw Error(fmt::format("error while writing {}", path_), "is the disk full?");
}

ReadResult read_recording(const std::string& path, RecordingVisitor& visitor) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f)
    throw Error(fmt::format("cannot open {}: {}", path, std::strerror(errno)), {},
                errno == EACCES ? kExitPermission : kExitRuntime);
  struct Closer {
    FILE* f;
    ~Closer() { std::fclose(f); }
  } closer{f};

  char magic[sizeof(kRecordingMagic)];
  uint32_t version = 0;
  if (std::fread(magic, 1, sizeof(magic), f) != sizeof(magic) ||
      std::memcmp(magic, kRecordingMagic, sizeof(magic)) != 0)
    throw Error(fmt::format("{} is not a gilstat recording", path),
                "record one with `gilstat run -o FILE -- python3 app.py`");
  if (std::fread(&version, sizeof(version), 1, f) != 1)
    throw Error(fmt::format("{} is truncated before its format version", path));
  if (version > kRecordingVersion)
    throw Error(fmt::format("{} uses recording format {}, newer than this gilstat reads ({})",
                            path, version, kRecordingVersion),
                "use a newer gilstat to read it");

  ReadResult result;
  std::string payload;
  for (;;) {
    uint8_t type;
    uint32_t len;
    if (std::fread(&type, 1, 1, f) != 1) break;  // clean end of file
    if (std::fread(&len, sizeof(len), 1, f) != 1) {
      result.truncated = true;
      break;
    }
    if (len > (64u << 20)) throw Error(fmt::format("corrupt recording {}: record too large", path));
    payload.resize(len);
    if (len && std::fread(payload.data(), 1, len, f) != len) {
      result.truncated = true;
      break;
    }
    Cursor c(payload.data(), payload.size());
    switch (type) {
      case kMeta: {
        RecMeta m;
        m.pid = c.get<int32_t>();
        m.clock = static_cast<ClockKind>(c.get<uint32_t>());
        m.py_version_hex = c.get<uint32_t>();
        m.free_threaded = c.get<uint8_t>();
        m.libpython_shared = c.get<uint8_t>();
        m.window_start = c.get<uint64_t>();
        m.gilstat_version = c.get_str();
        m.py_version = c.get_str();
        m.command = c.get_str();
        visitor.on_meta(m);
        break;
      }
      case kEvent: {
        const auto tid = c.get<uint32_t>();
        const auto flags = c.get<uint32_t>();
        visitor.on_event(tid, flags, c.get<Event>());
        break;
      }
      case kName: {
        const auto tid = c.get<uint32_t>();
        visitor.on_name(tid, c.get_str());
        break;
      }
      case kDrops: {
        const auto tid = c.get<uint32_t>();
        visitor.on_drops(tid, c.get<uint64_t>());
        break;
      }
      case kGil: {
        RecGil g;
        g.index = c.get<uint32_t>();
        g.address = c.get<uint64_t>();
        g.initial_switch_number = c.get<uint64_t>();
        g.final_switch_number = c.get<uint64_t>();
        g.initial_holder = c.get<uint64_t>();
        const uint32_t n = c.get<uint32_t>();
        if (n > kMaxGils * 64u) throw Error(fmt::format("corrupt recording {}", path));
        for (uint32_t i = 0; i < n; ++i) g.interp_ids.push_back(c.get<int64_t>());
        visitor.on_gil(g);
        break;
      }
      case kEnd: {
        RecEnd e;
        e.window_end = c.get<uint64_t>();
        e.ns_per_tick = c.get<double>();
        e.drops_no_ring = c.get<uint64_t>();
        visitor.on_end(e);
        result.complete = true;
        break;
      }
      default: break;  // a newer record type: skipped by its length
    }
  }
  return result;
}

}  // namespace gilstat::proto

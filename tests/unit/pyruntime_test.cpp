// The outside reader of a CPython runtime (src/pyruntime/) on a fake process
// image laid out as CPython 3.11 lays it out (the measured table), and its
// line-table decoders on hand-made tables: what it must find, and that a
// hostile or torn image (loops, absurd sizes, cut tables) gives an error or
// a partial result, never a hang or a read outside the bounds.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "attach/remote_memory.hpp"
#include "gilstat/cpython_layout.hpp"
#include "gilstat/cpython_objects.hpp"
#include "pyruntime/line_table.hpp"
#include "pyruntime/runtime_reader.hpp"
#include "pyruntime/thread_gil_state.hpp"

namespace gilstat::pyruntime {
namespace {

std::vector<std::byte> bytes(std::initializer_list<int> values) {
  std::vector<std::byte> out;
  for (int v : values) out.push_back(static_cast<std::byte>(v));
  return out;
}

TEST(LineTable, Lnotab) {
  // addresses 0-5: line 10, 6-13: 11, 14 on: 13.
  const auto t = bytes({6, 1, 8, 2});
  EXPECT_EQ(lnotab_line(t, 10, 0), 10);
  EXPECT_EQ(lnotab_line(t, 10, 5), 10);
  EXPECT_EQ(lnotab_line(t, 10, 6), 11);
  EXPECT_EQ(lnotab_line(t, 10, 14), 13);
  EXPECT_EQ(lnotab_line(bytes({0, 0x80}), 10, 4), std::nullopt);  // below line 0
  EXPECT_EQ(lnotab_line(bytes({6}), 10, 8), 10);                  // odd size: last byte ignored
}

TEST(LineTable, Linetable310) {
  // [0,4): 6; [4,6): no line; [6,12): 8.
  const auto t = bytes({4, 1, 2, 0x80, 6, 2});
  EXPECT_EQ(linetable310_line(t, 5, 0), 6);
  EXPECT_EQ(linetable310_line(t, 5, 3), 6);
  EXPECT_EQ(linetable310_line(t, 5, 4), std::nullopt);
  EXPECT_EQ(linetable310_line(t, 5, 6), 8);
  EXPECT_EQ(linetable310_line(t, 5, 12), std::nullopt);  // past the table
}

TEST(LineTable, LocationTable) {
  const auto t = bytes({
      0x80 | (13 << 3) | 2, 0x04,           // no column, 3 units, line +2
      0x80 | (0 << 3) | 0, 0x05,            // short form, 1 unit, same line
      0x80 | (14 << 3) | 1, 0x03, 0, 1, 2,  // long form, 2 units, line -1
      0x80 | (11 << 3) | 0, 3, 4,           // one line form, 1 unit, line +1
      0x80 | (15 << 3) | 0,                 // no location, 1 unit
  });
  EXPECT_EQ(location_table_line(t, 100, 0), 102);
  EXPECT_EQ(location_table_line(t, 100, 2), 102);
  EXPECT_EQ(location_table_line(t, 100, 3), 102);
  EXPECT_EQ(location_table_line(t, 100, 4), 101);
  EXPECT_EQ(location_table_line(t, 100, 5), 101);
  EXPECT_EQ(location_table_line(t, 100, 6), 102);
  EXPECT_EQ(location_table_line(t, 100, 7), std::nullopt);
  EXPECT_EQ(location_table_line(t, 100, 8), std::nullopt);
}

TEST(LineTable, LocationTableHostile) {
  // Cut inside a varint, an entry without its top bit, an endless varint.
  EXPECT_EQ(location_table_line(bytes({0x80 | (13 << 3), 0x44}), 1, 0), std::nullopt);
  EXPECT_EQ(location_table_line(bytes({0x04, 0x80}), 1, 0), std::nullopt);
  std::vector<std::byte> endless(64, std::byte{0x7f});
  endless.insert(endless.begin(), std::byte{0x80 | (13 << 3)});
  EXPECT_EQ(location_table_line(endless, 1, 0), std::nullopt);
  EXPECT_EQ(location_table_line({}, 1, 0), std::nullopt);
  // A line delta that would leave any real file.
  EXPECT_EQ(location_table_line(bytes({0x80 | (13 << 3), 0x3f | 0x40, 0x3f | 0x40, 0x3f}), 1, 0),
            std::nullopt);
}

TEST(SyscallFile, Parses) {
  auto f = parse_syscall("202 0x7f12a0 0x80 0x0 0x7ffd 0x0 0x0 0x7ffc 0x7f12\n");
  ASSERT_TRUE(f && f->number);
  EXPECT_EQ(*f->number, 202);
  EXPECT_EQ(f->arg0, 0x7f12a0u);
  EXPECT_TRUE(parse_syscall("running\n")->running);
  EXPECT_FALSE(parse_syscall("-1 0x7ffd 0x4005\n")->number);
  EXPECT_FALSE(parse_syscall("garbage"));
  EXPECT_FALSE(parse_syscall("202 zz"));
}

// A 3.11 process image: one interpreter, one thread, frames, code objects,
// a Thread instance with split-table attributes.
class Fake311 {
 public:
  static constexpr uint64_t kBase = 0x10000, kSize = 0x20000;
  static constexpr uint64_t R = 0x10000, I = 0x11000, T = 0x12000, C = 0x12800;
  static constexpr uint64_t F1 = 0x13000, F2 = 0x13200;
  static constexpr uint64_t CODE1 = 0x14000, CODE2 = 0x14400;
  static constexpr uint64_t TCODE = 0x15000, TSTR = 0x15100, TBYTES = 0x15200, TTHREAD = 0x15400;
  static constexpr uint64_t SELF = 0x18000, KEYS = 0x18400, VALUES = 0x18800;
  const cpython::ObjectLayout& l = cpython::kObjects311;

  Fake311() : image_(kSize) {
    put_cstr(TCODE + 0x700, "code");
    put64(TCODE + l.tp_name, TCODE + 0x700);
    put_cstr(TSTR + 0x700, "str");
    put64(TSTR + l.tp_name, TSTR + 0x700);
    put_cstr(TBYTES + 0x700, "bytes");
    put64(TBYTES + l.tp_name, TBYTES + 0x700);
    put64(R + l.runtime_interpreters_head, I);
    const uint64_t gil = R + cpython::runtime_gil_offset(11);
    put32(gil + cpython::kGilDefault.locked, 1);
    put64(gil + cpython::kGilDefault.last_holder, T);
    put64(I + l.interp_threads_head, T);
    put64(T + l.tstate_thread_id, 0x7000);
    put64(T + l.tstate_native_thread_id, 4242);
    put64(T + l.tstate_frame, C);
    put64(C + l.cframe_current_frame, F1);
    // innermost: Worker.work at unit 4 (line 101); then threading's bootstrap.
    code(CODE1, "Worker.work", "/app/w.py", 100);
    put64(F1 + l.frame_code, CODE1);
    put64(F1 + l.frame_lasti, CODE1 + l.code_code_adaptive + 2 * 4);
    put64(F1 + l.frame_back, F2);
    code(CODE2, "Thread._bootstrap_inner", "/usr/lib/python3.11/threading.py", 1000);
    put64(F2 + l.frame_code, CODE2);
    put64(F2 + l.frame_lasti, CODE2 + l.code_code_adaptive);
    put64(F2 + l.frame_localsplus, SELF);
    // self: a managed-dict instance whose values follow its type's cached keys.
    put64(SELF + l.ob_type, TTHREAD);
    put64(TTHREAD + l.tp_flags, cpython::kTpFlagsManagedDict);
    put64(TTHREAD + l.ht_cached_keys, KEYS);
    put64(SELF - 32, VALUES);
    put8(KEYS + l.keys_log2_index_bytes, 3);
    put8(KEYS + l.keys_kind, 1);  // unicode keys: (key, value) entries
    put64(KEYS + l.keys_nentries, 2);
    put64(KEYS + l.keys_indices + 8 + 0, str(0x19000, "_target"));
    put64(KEYS + l.keys_indices + 8 + 16, str(0x19100, "_name"));
    put64(VALUES + 8, str_latin1(0x19200, "worker-\xfc"));
  }

  void code(uint64_t at, const std::string& name, const std::string& file, int first) {
    put64(at + l.ob_type, TCODE);
    put64(at + l.ob_size, 10);
    put64(at + l.code_qualname, str(at + 0x100, name));
    put64(at + l.code_name, at + 0x100);
    put64(at + l.code_filename, str(at + 0x200, file));
    put32(at + l.code_firstlineno, static_cast<uint32_t>(first));
    // units 0-3: first; 4-9: first + 1
    put64(at + l.code_linetable,
          bytes_obj(at + 0x300, {0x80 | (13 << 3) | 3, 0, 0x80 | (13 << 3) | 5, 2}));
  }
  uint64_t str(uint64_t at, const std::string& ascii) {
    put64(at + l.ob_type, TSTR);
    put64(at + l.unicode_length, ascii.size());
    put32(at + l.unicode_state,
          (1u << l.unicode_kind_bit) | (1u << l.unicode_compact_bit) | (1u << l.unicode_ascii_bit));
    std::memcpy(&image_[at - kBase + l.unicode_ascii_size], ascii.data(), ascii.size());
    return at;
  }
  uint64_t str_latin1(uint64_t at, const std::string& latin1) {
    put64(at + l.ob_type, TSTR);
    put64(at + l.unicode_length, latin1.size());
    put32(at + l.unicode_state, (1u << l.unicode_kind_bit) | (1u << l.unicode_compact_bit));
    std::memcpy(&image_[at - kBase + l.unicode_compact_size], latin1.data(), latin1.size());
    return at;
  }
  uint64_t bytes_obj(uint64_t at, std::initializer_list<int> b) {
    put64(at + l.ob_type, TBYTES);
    put64(at + l.ob_size, b.size());
    size_t i = 0;
    for (int v : b) image_[at - kBase + l.bytes_sval + i++] = static_cast<std::byte>(v);
    return at;
  }
  void put64(uint64_t at, uint64_t v) { std::memcpy(&image_[at - kBase], &v, 8); }
  void put32(uint64_t at, uint32_t v) { std::memcpy(&image_[at - kBase], &v, 4); }
  void put8(uint64_t at, uint8_t v) { std::memcpy(&image_[at - kBase], &v, 1); }
  void put_cstr(uint64_t at, const char* s) { std::memcpy(&image_[at - kBase], s, strlen(s) + 1); }

  // The image as a fake target's memory (a copy: later puts need a new one).
  attach::FakeRemoteMemory memory() const {
    attach::FakeRemoteMemory m;
    m.add_region(attach::RemoteAddr(kBase), image_);
    return m;
  }

  PySnapshot read() {
    attach::FakeRemoteMemory memory = this->memory();
    // pid 4000: the thread (tid 4242) is not the main thread.
    return read_runtime(memory, 4000, attach::RemoteAddr(R), 0x030b07f0);
  }

 private:
  std::vector<std::byte> image_;
};

TEST(RuntimeReader, ReadsThreadsStacksNamesAndTheGil) {
  Fake311 f;
  const PySnapshot s = f.read();
  EXPECT_TRUE(s.problems.empty());
  ASSERT_EQ(s.threads.size(), 1u);
  const PyThread& t = s.threads[0];
  EXPECT_EQ(t.tid, 4242);
  EXPECT_EQ(t.pthread_id, 0x7000u);
  EXPECT_EQ(t.name, "worker-\xc3\xbc");  // UTF-8
  EXPECT_EQ(t.name_source, "threading");
  ASSERT_EQ(t.stack.size(), 2u);
  EXPECT_EQ(t.stack[0].function, "Worker.work");
  EXPECT_EQ(t.stack[0].file, "/app/w.py");
  EXPECT_EQ(t.stack[0].line, 101);
  EXPECT_EQ(t.stack[1].function, "Thread._bootstrap_inner");
  EXPECT_EQ(t.stack[1].line, 1000);
  EXPECT_TRUE(t.stack_error.empty());
  ASSERT_EQ(s.gils.size(), 1u);
  EXPECT_EQ(s.gils[0].locked, 1);
  EXPECT_EQ(s.gils[0].last_holder.value(), Fake311::T);
}

TEST(RuntimeReader, LoopsEndWithAnError) {
  Fake311 f;
  f.put64(Fake311::F2 + f.l.frame_back, Fake311::F1);  // frame chain loops
  f.put64(Fake311::I + f.l.interp_next, Fake311::I);   // interpreter list loops
  f.put64(Fake311::T + f.l.tstate_next, Fake311::T);   // thread list loops
  const PySnapshot s = f.read();
  ASSERT_EQ(s.threads.size(), 1u);
  EXPECT_EQ(s.threads[0].stack.size(), 2u);
  EXPECT_NE(s.threads[0].stack_error.find("loops"), std::string::npos);
  EXPECT_EQ(s.problems.size(), 2u);
}

TEST(RuntimeReader, AnAbsurdDictGivesNoName) {
  Fake311 f;
  f.put64(Fake311::KEYS + f.l.keys_nentries, uint64_t{1} << 40);
  const PySnapshot s = f.read();
  ASSERT_EQ(s.threads.size(), 1u);
  EXPECT_EQ(s.threads[0].name, "");
  EXPECT_EQ(s.threads[0].stack.size(), 2u);
  EXPECT_TRUE(s.threads[0].stack_error.empty());
}

TEST(RuntimeReader, HostileSizesAreBounded) {
  Fake311 f;
  f.put64(Fake311::CODE1 + f.l.code_qualname, 0x1a000);
  f.str(0x1a000, "x");
  f.put64(0x1a000 + f.l.unicode_length, uint64_t{1} << 40);  // absurd string length
  f.put64(Fake311::CODE2 + f.l.code_linetable, 0x1b000);
  f.bytes_obj(0x1b000, {});
  f.put64(0x1b000 + f.l.ob_size, uint64_t{1} << 50);  // absurd line table
  const PySnapshot s = f.read();
  ASSERT_EQ(s.threads.size(), 1u);
  const PyThread& t = s.threads[0];
  ASSERT_EQ(t.stack.size(), 1u);
  EXPECT_LE(t.stack[0].function.size(), 256u);  // read no further than the bound
  EXPECT_NE(t.stack_error.find("code object"), std::string::npos);  // the second is refused
  EXPECT_EQ(t.name, "");
}

TEST(RuntimeReader, UnmappedPointersAreErrorsNotReads) {
  Fake311 f;
  f.put64(Fake311::F1 + f.l.frame_back, 0xdead0000);  // outside the image
  f.put64(Fake311::T + f.l.tstate_next, 0x7fff0000);
  const PySnapshot s = f.read();
  ASSERT_EQ(s.threads.size(), 1u);
  EXPECT_EQ(s.threads[0].stack.size(), 1u);
  EXPECT_FALSE(s.threads[0].stack_error.empty());
  EXPECT_FALSE(s.problems.empty());
}

// Counts the reads a walk makes: each is a process_vm_readv on a live target.
class CountingMemory : public attach::RemoteMemory {
 public:
  explicit CountingMemory(const attach::RemoteMemory& inner) : inner_(inner) {}
  bool read(attach::RemoteAddr addr, std::span<std::byte> out) const override {
    ++reads;
    return inner_.read(addr, out);
  }
  mutable int reads = 0;

 private:
  const attach::RemoteMemory& inner_;
};

TEST(HolderSampler, ReadsEachFrameAndCodeObjectOnceASample) {
  Fake311 f;
  const attach::FakeRemoteMemory image = f.memory();
  CountingMemory memory(image);
  HolderSampler sampler(memory, 4000, attach::RemoteAddr(Fake311::R), 0x030b07f0);
  ASSERT_EQ(sampler.sample(1).size(), 1u);  // the first one reads the runtime whole
  memory.reads = 0;
  const auto samples = sampler.sample(2);
  ASSERT_EQ(samples.size(), 1u);
  EXPECT_EQ(samples[0].tid, 4242);
  ASSERT_EQ(samples[0].stack.size(), 2u);
  EXPECT_EQ(samples[0].stack[0].function, "Worker.work");
  EXPECT_EQ(samples[0].stack[0].line, 101);
  EXPECT_EQ(samples[0].stack[1].line, 1000);
  // The GIL twice (before and after the walk), the tid, the innermost frame
  // twice (through the 3.11 _PyCFrame: two reads each), then one read per
  // frame and one per code object: no name, string or line table again.
  EXPECT_EQ(memory.reads, 2 + 1 + 4 + 2 * 2);
}

TEST(HolderSampler, ACodeObjectReplacedAtTheSameAddressIsReadAgain) {
  Fake311 f;
  {
    const attach::FakeRemoteMemory image = f.memory();
    HolderSampler sampler(image, 4000, attach::RemoteAddr(Fake311::R), 0x030b07f0);
    ASSERT_EQ(sampler.sample(1).at(0).stack.at(0).function, "Worker.work");
  }
  // The same sampler (its cache) over memory where CODE1 is now another
  // function, with its own name and line table.
  attach::FakeRemoteMemory before = f.memory();
  f.put64(Fake311::CODE1 + f.l.code_qualname, f.str(0x1a000, "Other.run"));
  f.put64(Fake311::CODE1 + f.l.code_linetable,
          f.bytes_obj(0x1a100, {0x80 | (13 << 3) | 7, 4, 0x80 | (13 << 3) | 1, 0}));  // first + 2
  const attach::FakeRemoteMemory after = f.memory();
  struct Switchable : attach::RemoteMemory {
    const attach::RemoteMemory* now = nullptr;
    bool read(attach::RemoteAddr a, std::span<std::byte> out) const override {
      return now->read(a, out);
    }
  } memory;
  memory.now = &before;
  HolderSampler sampler(memory, 4000, attach::RemoteAddr(Fake311::R), 0x030b07f0);
  ASSERT_EQ(sampler.sample(1).at(0).stack.at(0).function, "Worker.work");
  memory.now = &after;
  const auto samples = sampler.sample(2);
  ASSERT_EQ(samples.size(), 1u);
  EXPECT_EQ(samples[0].stack.at(0).function, "Other.run");
  EXPECT_EQ(samples[0].stack.at(0).line, 102);
}

}  // namespace
}  // namespace gilstat::pyruntime

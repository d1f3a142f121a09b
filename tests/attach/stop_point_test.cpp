// The safe stop point check (stop_point.hpp): every frame of the stopped
// thread is looked at, on made-up stacks and on real ones (CPython, a thread
// inside glibc's malloc/free, a thread inside dlopen), and load_library_and_call
// never borrows a thread stopped there.
#include "attach/stop_point.hpp"

#include <dlfcn.h>
#include <gtest/gtest.h>
#include <malloc.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <thread>

#include "attach/load_library.hpp"
#include "attach/ptrace_session.hpp"
#include "common/error.hpp"
#include "test_support.hpp"

extern "C" {
// A function the tests declare "unsafe" (as malloc is): it blocks in read()
// on a pipe, so the innermost frame is a syscall in libc and this one is
// further out.
__attribute__((noinline)) void gilstat_test_allocator_like(int fd) {
  char byte;
  while (read(fd, &byte, 1) < 0) {
  }
  asm volatile("" ::: "memory");  // no tail call: keep this frame
}

// Calls `stub(fd, gilstat_test_allocator_like)`: `stub` is generated code
// without unwind information, so this frame is only found by the scan.
__attribute__((noinline)) void gilstat_test_unsafe_caller(int fd,
                                                          void (*stub)(int, void (*)(int))) {
  stub(fd, gilstat_test_allocator_like);
  asm volatile("" ::: "memory");
}
}

namespace gilstat::attach {
namespace {

using namespace std::chrono_literals;
using test::Child;

constexpr const char* kBusy = "the target is busy in the dynamic loader or allocator; try again";
constexpr const char* kEntry = "gilstat_test_entry";

std::vector<std::byte> bytes(std::initializer_list<int> values) {
  std::vector<std::byte> out;
  for (int v : values) out.push_back(static_cast<std::byte>(v));
  return out;
}

user_regs_struct regs_at(uint64_t rip, int64_t orig_rax, uint64_t rsp = 0) {
  user_regs_struct regs{};
  regs.rip = rip;
  regs.orig_rax = static_cast<uint64_t>(orig_rax);
  regs.rsp = rsp;
  return regs;
}

// Kills and reaps a forked child on every path out of a test.
struct Reap {
  pid_t pid;
  ~Reap() {
    if (pid <= 0) return;  // never kill(-1) or kill(0)
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, __WALL);
  }
};

TEST(StopPoint, FollowsCallRecognisesCallInstructions) {
  FakeRemoteMemory memory;
  memory.add_region(RemoteAddr(0x1000), bytes({0x90, 0x90, 0x90, 0xe8, 1, 2, 3, 4}));  // call rel32
  memory.add_region(RemoteAddr(0x2000), bytes({0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0xff, 0xd0}));
  memory.add_region(RemoteAddr(0x3000), bytes({0x90, 0x90, 0xff, 0x15, 1, 2, 3, 4}));  // [rip+x]
  memory.add_region(RemoteAddr(0x4000), bytes({0x90, 0x90, 0x90, 0x90, 0x90, 0xff, 0x53, 8}));
  memory.add_region(RemoteAddr(0x5000), bytes({0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0xff, 0xe0}));
  memory.add_region(RemoteAddr(0x6000), bytes({0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90}));
  EXPECT_TRUE(follows_call(memory, RemoteAddr(0x1008)));
  EXPECT_TRUE(follows_call(memory, RemoteAddr(0x2008)));   // call *%rax
  EXPECT_TRUE(follows_call(memory, RemoteAddr(0x3008)));   // call *x(%rip)
  EXPECT_TRUE(follows_call(memory, RemoteAddr(0x4008)));   // call *8(%rbx)
  EXPECT_FALSE(follows_call(memory, RemoteAddr(0x5008)));  // jmp *%rax
  EXPECT_FALSE(follows_call(memory, RemoteAddr(0x6008)));  // no call
  EXPECT_FALSE(follows_call(memory, RemoteAddr(0x9008)));  // unreadable
  // At the start of a mapping whose previous page is not mapped.
  memory.add_region(RemoteAddr(0x10000), bytes({0x55, 0x31, 0xed, 0xff, 0xd6, 0x5d, 0xc3}));
  EXPECT_TRUE(follows_call(memory, RemoteAddr(0x10005)));
  EXPECT_FALSE(follows_call(memory, RemoteAddr(0x10001)));
}

class MadeUpStack : public ::testing::Test {
 protected:
  static constexpr uint64_t kLibc = 0x7f0000000000, kMalloc = kLibc + 0x1000;
  static constexpr uint64_t kLoader = 0x7f1000000000, kPython = 0x560000000000;
  static constexpr uint64_t kStack = 0x7ffd00000000, kStackEnd = kStack + 0x1000;
  static constexpr int64_t kMmap = 9, kUser = -1;

  MadeUpStack()
      : maps_(ProcessMaps::parse(
            "560000000000-560000100000 r-xp 00000000 08:01 3 /usr/bin/python3.11\n"
            "7f0000000000-7f0000100000 r-xp 00000000 08:01 1 /usr/lib/libc.so.6\n"
            "7f1000000000-7f1000100000 r-xp 00000000 08:01 2 /usr/lib/ld-linux-x86-64.so.2\n"
            "7ffd00000000-7ffd00001000 rw-p 00000000 00:00 0 [stack]\n")),
        unsafe_(UnsafeCode::from_ranges(
            {{RemoteAddr(kMalloc), RemoteAddr(kMalloc + 0x400), "malloc in libc.so.6"},
             {RemoteAddr(kLoader), RemoteAddr(kLoader + 0x100000), "ld-linux-x86-64.so.2"}},
            {{RemoteAddr(kLibc), RemoteAddr(kLibc + 0x100000), "libc.so.6"}})) {
    // A call rel32 ending at kMalloc + 0x108 (malloc calling into mmap).
    memory_.add_region(RemoteAddr(kMalloc + 0x100), bytes({0x90, 0x90, 0x90, 0xe8, 0, 0, 0, 0}));
  }

  StackWalk walk(std::initializer_list<uint64_t> pcs, bool complete) const {
    StackWalk w;
    uint64_t sp = kStack + 0x100;
    for (uint64_t pc : pcs) {
      w.frames.push_back({RemoteAddr(pc), RemoteAddr(sp), w.frames.empty(), false});
      sp += 0x40;
    }
    w.complete = complete;
    return w;
  }
  void stack_words(std::vector<uint64_t> words) {
    words.resize((kStackEnd - kStack) / 8, 0);
    std::vector<std::byte> raw(words.size() * 8);
    std::memcpy(raw.data(), words.data(), raw.size());
    memory_.add_region(RemoteAddr(kStack), std::move(raw));
  }
  StopVerdict judge(const user_regs_struct& regs, const StackWalk& w) const {
    return judge_stop_point(unsafe_, maps_, memory_, regs, w);
  }

  ProcessMaps maps_;
  UnsafeCode unsafe_;
  FakeRemoteMemory memory_;
};

TEST_F(MadeUpStack, AnOuterMallocFrameMakesASyscallStopUnsafe) {
  stack_words({});
  const auto regs = regs_at(kLibc + 0x50000, kMmap, kStack + 0x100);
  // mmap in libc <- malloc <- the interpreter: the innermost frame alone looks fine.
  const StopVerdict v = judge(regs, walk({kLibc + 0x50000, kMalloc + 0x108, kPython + 0x10}, true));
  EXPECT_FALSE(v.safe);
  EXPECT_NE(v.where.find("malloc in libc.so.6 (frame 1)"), std::string::npos) << v.where;
  // The same syscall reached from the interpreter only is safe.
  EXPECT_TRUE(judge(regs, walk({kLibc + 0x50000, kPython + 0x10, kPython + 0x20}, true)).safe);
}

TEST_F(MadeUpStack, ReturnAddressAtTheEndOfAFunctionCountsForIt) {
  stack_words({});
  // A call as the last instruction of malloc returns to the first byte after it.
  const auto regs = regs_at(kLibc + 0x50000, kMmap, kStack + 0x100);
  EXPECT_FALSE(judge(regs, walk({kLibc + 0x50000, kMalloc + 0x400, kPython}, true)).safe);
}

TEST_F(MadeUpStack, InnermostFrameRules) {
  stack_words({});
  auto alone = [&](uint64_t rip, int64_t nr) {
    return judge(regs_at(rip, nr, kStack + 0x100), walk({rip, kPython + 0x10}, true));
  };
  EXPECT_TRUE(alone(kLibc + 0x50000, 230).safe);     // clock_nanosleep from the interpreter
  EXPECT_FALSE(alone(kLibc + 0x50000, kUser).safe);  // libc code outside a syscall
  EXPECT_FALSE(alone(kLoader + 0x100, 257).safe);    // ld.so, even in a syscall
  EXPECT_FALSE(alone(kMalloc + 0x10, kUser).safe);   // malloc itself
  EXPECT_TRUE(alone(kPython + 0x100, kUser).safe);   // the interpreter loop
}

TEST_F(MadeUpStack, AnIncompleteWalkScansTheRestOfTheStack) {
  const auto regs = regs_at(kLibc + 0x50000, kMmap, kStack + 0x100);
  // The unwinder gave up after frame 0; malloc's return address is further up.
  stack_words({0,      0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,      0,
               0,      0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x1234, kMalloc + 0x108,
               kPython});
  StopVerdict v = judge(regs, walk({kLibc + 0x50000}, false));
  EXPECT_FALSE(v.safe);
  EXPECT_NE(v.where.find("malloc in libc.so.6 (a return address at 0x7ffd00000108"),
            std::string::npos)
      << v.where;
  // A complete walk is trusted: the same word (dead data) does not count.
  EXPECT_TRUE(judge(regs, walk({kLibc + 0x50000, kPython}, true)).safe);
}

TEST_F(MadeUpStack, TheScanCountsOnlyReturnAddresses) {
  const auto regs = regs_at(kLibc + 0x50000, kMmap, kStack + 0x100);
  // Pointers into malloc that do not follow a call (function pointers, data).
  std::vector<uint64_t> words(40, 0);
  words[33] = kMalloc + 0x10;
  words[34] = kMalloc;
  stack_words(words);
  EXPECT_TRUE(judge(regs, walk({kLibc + 0x50000}, false)).safe);
}

TEST(StopPoint, UnsafeCodeOfThisProcessNamesTheAllocatorAndTheLoader) {
  const ProcessMaps maps = ProcessMaps::read(getpid());
  const UnsafeCode unsafe = UnsafeCode::of_process(getpid(), maps);
  auto label = [&](const void* address) {
    const UnsafeCode::Range* r = unsafe.find(RemoteAddr(reinterpret_cast<uint64_t>(address)));
    return r ? r->label : std::string("(safe)");
  };
  void* (*volatile malloc_fn)(size_t) = &malloc;
  void (*volatile free_fn)(void*) = &free;
  void* (*volatile dlopen_fn)(const char*, int) = &dlopen;
  pid_t (*volatile getpid_fn)() = &getpid;
  EXPECT_NE(label(reinterpret_cast<const void*>(malloc_fn)).find("malloc in libc.so"),
            std::string::npos);
  EXPECT_NE(label(reinterpret_cast<const void*>(free_fn)).find("free in libc.so"),
            std::string::npos);
  EXPECT_NE(label(reinterpret_cast<const void*>(dlopen_fn)).find("dlopen in libc.so"),
            std::string::npos);
  EXPECT_EQ(label(reinterpret_cast<const void*>(getpid_fn)), "(safe)");
  EXPECT_TRUE(unsafe.in_libc(RemoteAddr(reinterpret_cast<uint64_t>(getpid_fn))));
  bool loader_seen = false;
  for (const MapEntry& e : maps.entries()) {
    if (e.executable && is_glibc_loader(e.basename())) {
      EXPECT_EQ(label(reinterpret_cast<const void*>(e.start.value() + 16)), e.basename());
      loader_seen = true;
    }
  }
  EXPECT_TRUE(loader_seen);
}

// CPython (built without frame pointers) unwinds to its outermost frame
// through .eh_frame: the unwinder is trusted there and no scan is needed.
TEST(StopPoint, CPythonStacksUnwindCompletely) {
  GILSTAT_REQUIRE_PTRACE();
  const char* spin =
      "import threading, time\n"
      "def spin():\n"
      "    n = 0\n"
      "    while True: n = (n + 1) % 1000003; d = {n: [n] * 3}\n"
      "threading.Thread(target=spin, daemon=True).start()\n"
      "print('ready', flush=True)\n"
      "time.sleep(100)\n";
  int tried = 0;
  for (const char* python : {test::kDebianPython311, test::kPython312, test::kPython313}) {
    if (!test::find_executable(python)) continue;
    ++tried;
    Child child({python, "-c", spin});
    ASSERT_EQ(child.read_line(10s), "ready") << python;
    const ProcessMaps maps = ProcessMaps::read(child.pid());
    LiveRemoteMemory memory(child.pid());
    const UnsafeCode unsafe = UnsafeCode::of_process(child.pid(), maps);
    StackUnwinder unwinder(maps, memory);
    int complete = 0, stops = 0, safe = 0;
    Clock::duration unwind_time{};
    for (int i = 0; i < 40; ++i) {
      for (const pid_t tid : {child.pid(), 0}) {
        pid_t t = tid;
        if (t == 0) {  // the spinning thread: the other task
          for (const auto& e : std::filesystem::directory_iterator(
                   "/proc/" + std::to_string(child.pid()) + "/task")) {
            const pid_t other = std::atoi(e.path().filename().c_str());
            if (other != child.pid()) t = other;
          }
        }
        PtraceSession session(child.pid(), t, Clock::now() + 2s);
        const auto t0 = Clock::now();
        const StackWalk walk = unwinder.unwind(t);
        unwind_time += Clock::now() - t0;
        ++stops;
        complete += walk.complete;
        EXPECT_GE(walk.frames.size(), 4u) << python << ": " << walk.why_incomplete;
        safe += judge_stop_point(unsafe, maps, memory, session.saved().gp, walk).safe;
      }
      std::this_thread::sleep_for(1ms);
    }
    std::printf(
        "[ unwind   ] %s: %d/%d stops unwound completely, %d judged safe, %.2f ms "
        "per unwind\n",
        python, complete, stops, safe,
        std::chrono::duration<double, std::milli>(unwind_time).count() / stops);
    EXPECT_EQ(complete, stops) << python;
    EXPECT_GT(safe, stops / 2) << python;
  }
  if (tried == 0) GTEST_SKIP() << "no CPython installed at the expected paths";
}

// A forked copy of this test binary blocked in read() on a pipe under
// `body(fd)`, with one of its own functions declared unsafe (as malloc is).
class BlockedInRead : public ::testing::Test {
 protected:
  void start(void (*body)(int), const char* unsafe_function, const char* label) {
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    pid_ = fork();
    if (pid_ == 0) {
      close(fds[1]);
      body(fds[0]);
      _exit(0);
    }
    close(fds[0]);
    write_fd_ = fds[1];
    ASSERT_GT(pid_, 0);
    ASSERT_TRUE(test::wait_for_syscall(pid_, SYS_read, 5s));
    maps_ = ProcessMaps::read(pid_);
    memory_ = std::make_unique<LiveRemoteMemory>(pid_);
    auto object =
        open_mapped_object(pid_, *maps_, std::filesystem::read_symlink("/proc/self/exe").string());
    ASSERT_TRUE(object);
    auto sym = object->elf.find_symbol(unsafe_function);
    ASSERT_TRUE(sym);
    std::vector<UnsafeCode::Range> libc;
    for (const MapEntry& e : maps_->entries()) {
      if (e.executable && is_glibc_libc(e.basename())) libc.push_back({e.start, e.end, "libc"});
    }
    const RemoteAddr start = object->address_of(*sym);
    unsafe_ = UnsafeCode::from_ranges({{start, start + sym->size, label}}, libc);
    nothing_ = UnsafeCode::from_ranges({}, libc);
  }
  void TearDown() override {
    if (write_fd_ >= 0) close(write_fd_);
    Reap{pid_};
  }
  StopVerdict judge(const UnsafeCode& unsafe, const PtraceSession& session,
                    const StackWalk& walk) const {
    return judge_stop_point(unsafe, *maps_, *memory_, session.saved().gp, walk);
  }

  pid_t pid_ = -1;
  int write_fd_ = -1;
  std::optional<ProcessMaps> maps_;
  std::unique_ptr<LiveRemoteMemory> memory_;
  std::optional<UnsafeCode> unsafe_, nothing_;
};

// A real outer frame: gilstat_test_allocator_like blocked in read(); the
// innermost frame is a syscall in libc.
TEST_F(BlockedInRead, AnOuterFrameOnARealStackIsFound) {
  GILSTAT_REQUIRE_PTRACE();
  ASSERT_NO_FATAL_FAILURE(
      start(gilstat_test_allocator_like, "gilstat_test_allocator_like", "allocator-like"));
  PtraceSession session(pid_, 0, Clock::now() + 2s);
  const StackWalk walk = StackUnwinder(*maps_, *memory_).unwind(pid_);
  EXPECT_TRUE(walk.complete) << walk.why_incomplete;
  EXPECT_EQ(static_cast<long>(session.saved().gp.orig_rax), SYS_read);
  const StopVerdict v = judge(*unsafe_, session, walk);
  EXPECT_FALSE(v.safe);
  EXPECT_NE(v.where.find("allocator-like (frame "), std::string::npos) << v.where;
  EXPECT_EQ(v.where.find("(frame 0)"), std::string::npos) << v.where;
  EXPECT_TRUE(judge(*nothing_, session, walk).safe);
}

// A frame without unwind information (generated code, rbp cleared, as JIT
// code may leave it) between the blocked syscall and the unsafe frame: the
// unwind stops there instead of taking rbp == 0 for the end of the stack, and
// the scan of the rest of the stack finds the unsafe caller.
TEST_F(BlockedInRead, AFrameWithoutUnwindInformationLeavesTheRestToTheScan) {
  GILSTAT_REQUIRE_PTRACE();
  auto body = [](int fd) {
    // push rbp; xor ebp, ebp; call *%rsi; pop rbp; ret
    static const unsigned char kStub[] = {0x55, 0x31, 0xed, 0xff, 0xd6, 0x5d, 0xc3};
    void* page =
        mmap(nullptr, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) _exit(2);
    std::memcpy(page, kStub, sizeof(kStub));
    gilstat_test_unsafe_caller(fd, reinterpret_cast<void (*)(int, void (*)(int))>(page));
  };
  ASSERT_NO_FATAL_FAILURE(start(body, "gilstat_test_unsafe_caller", "unsafe-caller"));
  PtraceSession session(pid_, 0, Clock::now() + 2s);
  const StackWalk walk = StackUnwinder(*maps_, *memory_).unwind(pid_);
  EXPECT_FALSE(walk.complete);
  EXPECT_NE(walk.why_incomplete.find("no unwind information for frame 2"), std::string::npos)
      << walk.why_incomplete;
  const StopVerdict v = judge(*unsafe_, session, walk);
  EXPECT_FALSE(v.safe);
  EXPECT_NE(v.where.find("unsafe-caller (a return address at"), std::string::npos) << v.where;
}

// glibc's own malloc/free making mmap/munmap calls (64 MiB blocks): many stops land in those
// syscalls with malloc or free further out.  The old innermost-frame rule took
// them as safe; every one of them must be refused now.
TEST(StopPoint, StopsInsideGlibcMallocAreRefused) {
  GILSTAT_REQUIRE_PTRACE();
  const pid_t pid = fork();
  if (pid == 0) {
    // A fixed threshold, and blocks larger than any free space the heap
    // (inherited from the test process) may have: every block is an mmap.
    mallopt(M_MMAP_THRESHOLD, 64 * 1024);
    for (;;) {
      auto* p = static_cast<volatile char*>(malloc(64 << 20));
      p[0] = 1;
      free(const_cast<char*>(p));
    }
  }
  Reap reap{pid};
  ASSERT_GT(pid, 0);
  std::this_thread::sleep_for(50ms);
  const ProcessMaps maps = ProcessMaps::read(pid);
  LiveRemoteMemory memory(pid);
  const UnsafeCode unsafe = UnsafeCode::of_process(pid, maps);
  StackUnwinder unwinder(maps, memory);
  int stops = 0, in_allocator = 0, syscall_under_allocator = 0, complete = 0;
  std::vector<std::string> why_incomplete;
  for (int i = 0; i < 300; ++i) {
    PtraceSession session(pid, 0, Clock::now() + 2s);
    const user_regs_struct& regs = session.saved().gp;
    const StackWalk walk = unwinder.unwind(pid);
    ++stops;
    complete += walk.complete;
    if (!walk.complete && why_incomplete.size() < 3) why_incomplete.push_back(walk.why_incomplete);
    bool allocator_frame = false;
    for (size_t f = 0; f < walk.frames.size(); ++f) {
      const RemoteAddr pc = f == 0 ? walk.frames[f].pc : walk.frames[f].pc - 1;
      if (const UnsafeCode::Range* r = unsafe.find(pc)) {
        allocator_frame = allocator_frame || r->label.starts_with("malloc") ||
                          r->label.starts_with("free") || r->label.starts_with("__libc_");
      }
    }
    const StopVerdict v = judge_stop_point(unsafe, maps, memory, regs, walk);
    if (allocator_frame) {
      ++in_allocator;
      EXPECT_FALSE(v.safe) << "stop " << i << " inside the allocator judged safe";
      if (static_cast<int64_t>(regs.orig_rax) >= 0 && unsafe.in_libc(RemoteAddr(regs.rip)) &&
          !unsafe.find(RemoteAddr(regs.rip))) {
        ++syscall_under_allocator;
      }
    }
  }
  std::printf(
      "[ malloc   ] %d stops: %d complete unwinds, %d inside malloc/free, %d of them "
      "in a syscall with malloc/free further out\n",
      stops, complete, in_allocator, syscall_under_allocator);
  for (const std::string& why : why_incomplete)
    std::printf("[ malloc   ] incomplete: %s\n", why.c_str());
  EXPECT_GE(complete, stops * 9 / 10);
  // Every stop inside the allocator was refused above (the hard check).  Whether
  // any of them also caught malloc/free *inside* mmap/munmap depends on the
  // machine's timing (seen: 300 of 300 on one machine, 0 of 300 on another of the
  // same kind); MadeUpStack.AnOuterMallocFrameMakesASyscallStopUnsafe covers that
  // rule deterministically, so here its absence is said, not failed.
  if (syscall_under_allocator == 0 && !HasFailure())
    GTEST_SKIP() << "no stop of " << stops << " caught malloc/free inside mmap/munmap on this "
                 << "machine: the syscall-under-allocator case was not exercised here (every "
                 << in_allocator << " stops inside the allocator were refused)";
}

// The e2e allocating service (threads in malloc/free all the time): how
// often a stop is refused, and that every search finds a safe thread within a
// few stops, as load_library_and_call does: failing closed must not make
// attaching flaky.
TEST(StopPoint, AnAllocatingServiceHasSafeStopsAtOnce) {
  GILSTAT_REQUIRE_PTRACE();
  GILSTAT_REQUIRE_EXECUTABLE(test::kDebianPython311);
  // Its stdin: a pipe nobody writes to (end of stdin would stop it).
  Child child({test::kDebianPython311, "-c",
               "import os, runpy, sys\n"
               "r, w = os.pipe()\n"
               "sys.stdin = os.fdopen(r)\n"
               "runpy.run_path('" GILSTAT_E2E_WORKLOADS
               "/attach_alloc.py', run_name='__main__')\n"});
  ASSERT_EQ(child.read_line(10s), "ready");
  const ProcessMaps maps = ProcessMaps::read(child.pid());
  LiveRemoteMemory memory(child.pid());
  const UnsafeCode unsafe = UnsafeCode::of_process(child.pid(), maps);
  StackUnwinder unwinder(maps, memory);
  std::vector<pid_t> tids;
  for (const auto& e :
       std::filesystem::directory_iterator("/proc/" + std::to_string(child.pid()) + "/task")) {
    tids.push_back(std::atoi(e.path().filename().c_str()));
  }
  ASSERT_EQ(tids.size(), 6u);  // main, alloc-0..2, cmalloc, oscalls
  // The main thread (idle in a read of stdin) last: the search starts with the
  // busy ones.
  std::sort(tids.begin(), tids.end(), [&](pid_t a, pid_t b) {
    return (a == child.pid()) < (b == child.pid()) ||
           ((a == child.pid()) == (b == child.pid()) && a < b);
  });
  int stops = 0, refused = 0, complete = 0, worst_search = 0;
  for (int round = 0; round < 100; ++round) {
    int search = 0;  // stops until a safe one
    for (const pid_t tid : tids) {
      PtraceSession session(child.pid(), tid, Clock::now() + 2s);
      const StackWalk walk = unwinder.unwind(tid);
      ++stops;
      complete += walk.complete;
      const bool safe = judge_stop_point(unsafe, maps, memory, session.saved().gp, walk).safe;
      refused += !safe;
      if (search >= 0) search = safe ? -(search + 1) : search + 1;
    }
    worst_search = std::max(worst_search, search < 0 ? -search : 7);
    std::this_thread::sleep_for(2ms);
  }
  std::printf(
      "[ alloc    ] %d stops of 6 threads: %d refused, %d complete unwinds; a search "
      "needed at most %d stop(s)\n",
      stops, refused, complete, worst_search);
  EXPECT_EQ(complete, stops);
  EXPECT_LE(worst_search, 6) << "a round where no thread was at a safe stop";
}

class DlopenBlocked : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = test::ptrace_unavailable_reason()) GTEST_SKIP() << why->c_str();
    if (!test::find_executable(test::kPython312)) GTEST_SKIP() << "no " << test::kPython312;
    fifo_ = dir_.path() + "/release";
    ASSERT_EQ(mkfifo(fifo_.c_str(), 0600), 0);
  }
  // A CPython whose main thread dlopens the blocking library (with a second
  // thread asleep when `other_thread`), stuck in the library's constructor.
  std::unique_ptr<Child> start(bool other_thread) {
    const std::string script = std::string(
        "import ctypes, sys, threading, time\n"
        "if sys.argv[2] == 'thread':\n"
        "    threading.Thread(target=time.sleep, args=(100,), "
        "daemon=True).start()\n"
        "print('ready', flush=True)\n"
        "ctypes.CDLL(sys.argv[1])\n"
        "print('loaded', flush=True)\n"
        "time.sleep(100)\n");
    setenv("GILSTAT_TEST_BLOCK_FIFO", fifo_.c_str(), 1);
    auto child = std::make_unique<Child>(std::vector<std::string>{
        test::kPython312, "-c", script, GILSTAT_BLOCKING_INIT_LIB, other_thread ? "thread" : "-"});
    unsetenv("GILSTAT_TEST_BLOCK_FIFO");
    EXPECT_EQ(child->read_line(10s), "ready");
    EXPECT_TRUE(test::wait_for_syscall(child->pid(), SYS_openat, 5s));
    return child;
  }
  void release() { std::ofstream(fifo_) << 'x'; }
  bool injected(pid_t pid) {
    return ProcessMaps::read(pid)
        .find_object([](std::string_view b) { return b == "libgilstat_inject_target_lib.so"; })
        .has_value();
  }

  test::TempDir dir_;
  std::string fifo_;
};

// Only the main thread may be borrowed, and it is inside dlopen: refused with
// the "busy" error, the process untouched; once the dlopen is over, the same
// injection works.
TEST_F(DlopenBlocked, RefusesTheThreadAndLeavesTheProcessUntouched) {
  auto child = start(false);
  const std::string maps_before =
      *test::read_file("/proc/" + std::to_string(child->pid()) + "/maps");
  LoadOptions only_main;
  only_main.tid = child->pid();
  const auto t0 = Clock::now();
  try {
    load_library_and_call(child->pid(), GILSTAT_INJECT_TARGET_LIB, kEntry, dir_.path() + "/o",
                          800ms, only_main);
    FAIL() << "borrowed a thread stopped inside dlopen";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), kBusy);
    EXPECT_EQ(e.exit_code(), kExitRuntime);
    EXPECT_NE(e.hint().find("ld-linux"), std::string::npos) << e.hint();
    EXPECT_NE(e.hint().find("untouched"), std::string::npos) << e.hint();
  }
  // The search ends at 3/4 of the timeout; a timing bound with room for a
  // loaded machine (a search that did not give up would never end).
  const double waited_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  EXPECT_LT(waited_ms, 2000);
  // Untouched: the same mappings, still in the constructor's open(), alive.
  EXPECT_EQ(*test::read_file("/proc/" + std::to_string(child->pid()) + "/maps"), maps_before);
  // (the interrupted open() restarts on detach: back in it within moments)
  EXPECT_TRUE(test::wait_for_syscall(child->pid(), SYS_openat, 1s));
  EXPECT_FALSE(test::read_file(dir_.path() + "/o"));
  release();
  ASSERT_EQ(child->read_line(10s), "loaded");
  const LoadResult r = load_library_and_call(child->pid(), GILSTAT_INJECT_TARGET_LIB, kEntry,
                                             dir_.path() + "/o", 2s, only_main);
  EXPECT_EQ(r.return_value, 42);
  EXPECT_TRUE(injected(child->pid()));
}

// With another thread available, that one is borrowed (its dlopen waits for
// the loader lock until the constructor returns; the main thread is never
// made to call anything).
TEST_F(DlopenBlocked, BorrowsAnotherThread) {
  auto child = start(true);
  std::thread releaser([&] {
    std::this_thread::sleep_for(300ms);
    release();
  });
  LoadResult r;
  try {
    r = load_library_and_call(child->pid(), GILSTAT_INJECT_TARGET_LIB, kEntry, dir_.path() + "/o",
                              3s);
  } catch (const Error& e) {
    releaser.join();
    FAIL() << e.what() << " / " << e.hint();
  }
  releaser.join();
  EXPECT_EQ(r.return_value, 42);
  EXPECT_NE(r.borrowed_tid, child->pid());
  EXPECT_GE(r.stops, 2);
  EXPECT_EQ(child->read_line(10s), "loaded");
  EXPECT_TRUE(injected(child->pid()));
}

}  // namespace
}  // namespace gilstat::attach

// RemoteMemory: the live reader on this process (both mechanisms) and the fake.
#include "attach/remote_memory.hpp"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

namespace gilstat::attach {
namespace {

RemoteAddr addr_of(const void* p) { return RemoteAddr(reinterpret_cast<uint64_t>(p)); }

class LiveRemoteMemoryTest : public ::testing::TestWithParam<bool> {};

TEST_P(LiveRemoteMemoryTest, ReadsThisProcess) {
  LiveRemoteMemory memory(getpid(), /*force_proc_mem=*/GetParam());
  const uint64_t value = 0x1122334455667788;
  EXPECT_EQ(memory.read_value<uint64_t>(addr_of(&value)), value);

  // Two pages: a string that ends right before an unreadable page is still
  // readable; reads that touch the unreadable page fail.
  const long page = sysconf(_SC_PAGESIZE);
  auto* area = static_cast<char*>(
      mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(area, MAP_FAILED);
  ASSERT_EQ(munmap(area + page, page), 0);
  std::memset(area, 'a', page);
  area[page - 1] = '\0';
  auto text = memory.read_cstring(addr_of(area + page - 100), 4096);
  ASSERT_TRUE(text);
  EXPECT_EQ(text->size(), 99u);
  area[page - 1] = 'a';  // now unterminated up to the hole
  EXPECT_FALSE(memory.read_cstring(addr_of(area + page - 100), 4096));
  char buffer[64];
  EXPECT_FALSE(memory.read(addr_of(area + page - 8), std::as_writable_bytes(std::span(buffer))));
  EXPECT_FALSE(memory.read_value<int>(RemoteAddr(0)));
  munmap(area, page);
}

INSTANTIATE_TEST_SUITE_P(Mechanisms, LiveRemoteMemoryTest, ::testing::Values(false, true),
                         [](const auto& info) {
                           return info.param ? "ProcPidMem" : "ProcessVmReadv";
                         });

TEST(FakeRemoteMemory, ReadsAcrossAdjacentRegionsAndFailsOnGaps) {
  FakeRemoteMemory memory;
  memory.add_region(RemoteAddr(0x1000), std::vector<std::byte>(16, std::byte{1}));
  memory.add_region(RemoteAddr(0x1010), std::vector<std::byte>(16, std::byte{2}));
  memory.add_region(RemoteAddr(0x2000), {std::byte{'h'}, std::byte{'i'}, std::byte{0}});
  std::array<std::byte, 8> out;
  ASSERT_TRUE(memory.read(RemoteAddr(0x100c), out));
  EXPECT_EQ(out[3], std::byte{1});
  EXPECT_EQ(out[4], std::byte{2});
  EXPECT_FALSE(memory.read(RemoteAddr(0x101c), out));  // runs past the end
  EXPECT_FALSE(memory.read(RemoteAddr(0x0ffc), out));  // starts before
  EXPECT_EQ(memory.read_cstring(RemoteAddr(0x2000), 16), "hi");
  EXPECT_FALSE(memory.read_cstring(RemoteAddr(0x1000), 16));  // no NUL within 16
}

TEST(RemoteAddr, IsAValueNotAPointer) {
  constexpr RemoteAddr a(0x1000);
  static_assert(a + 0x10 == RemoteAddr(0x1010));
  static_assert(RemoteAddr(0x1010) - a == 0x10);
  static_assert(a < RemoteAddr(0x1001));
  EXPECT_EQ(to_string(a), "0x1000");
  EXPECT_TRUE(RemoteAddr().is_null());
}

}  // namespace
}  // namespace gilstat::attach

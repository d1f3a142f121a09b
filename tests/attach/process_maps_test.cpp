// /proc/PID/maps parsing and load-bias computation, on synthetic text and on
// this process itself.
#include "attach/process_maps.hpp"

#include <dlfcn.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "common/error.hpp"
#include "test_support.hpp"

namespace gilstat::attach {
namespace {

TEST(ProcessMaps, ParsesEveryKindOfLine) {
  const char* text =
      "00400000-00401000 r--p 00000000 08:01 1234                               "
      "/usr/bin/python3.11\n"
      "00401000-00600000 r-xp 00001000 08:01 1234                               "
      "/usr/bin/python3.11\n"
      "01e00000-01f00000 rw-p 00000000 00:00 0                                  [heap]\n"
      "7f0000000000-7f0000001000 rw-s 00000000 00:05 99                         /dev/shm/with "
      "space (1) x\n"
      "7f0000001000-7f0000002000 r-xp 00002000 fd:00 4242                       "
      "/opt/lib/libgone.so (deleted)\n"
      "7f0000002000-7f0000003000 ---p 00000000 00:00 0 \n"
      "this line is garbage\n"
      "7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]\n"
      "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]";
  const ProcessMaps maps = ProcessMaps::parse(text);
  ASSERT_EQ(maps.entries().size(), 8u);

  const MapEntry& text_segment = maps.entries()[1];
  EXPECT_EQ(text_segment.start, RemoteAddr(0x401000));
  EXPECT_EQ(text_segment.end, RemoteAddr(0x600000));
  EXPECT_TRUE(text_segment.readable && text_segment.executable);
  EXPECT_FALSE(text_segment.writable || text_segment.shared);
  EXPECT_EQ(text_segment.offset, 0x1000u);
  EXPECT_EQ(text_segment.dev_major, 8u);
  EXPECT_EQ(text_segment.dev_minor, 1u);
  EXPECT_EQ(text_segment.inode, 1234u);
  EXPECT_EQ(text_segment.path, "/usr/bin/python3.11");
  EXPECT_EQ(text_segment.basename(), "python3.11");
  EXPECT_TRUE(text_segment.is_file());

  EXPECT_FALSE(maps.entries()[2].is_file());  // [heap]
  EXPECT_EQ(maps.entries()[3].path, "/dev/shm/with space (1) x");
  EXPECT_TRUE(maps.entries()[3].shared);
  EXPECT_EQ(maps.entries()[4].path, "/opt/lib/libgone.so");
  EXPECT_TRUE(maps.entries()[4].deleted);
  EXPECT_EQ(maps.entries()[4].dev_major, 0xfdu);
  EXPECT_EQ(maps.entries()[5].path, "");
  EXPECT_EQ(maps.entries()[7].end, RemoteAddr(0xffffffffff601000));

  EXPECT_EQ(maps.object_paths(),
            (std::vector<std::string>{"/usr/bin/python3.11", "/dev/shm/with space (1) x",
                                      "/opt/lib/libgone.so"}));
  EXPECT_EQ(maps.mappings_of("/usr/bin/python3.11").size(), 2u);
  EXPECT_EQ(maps.find(RemoteAddr(0x401234)), &maps.entries()[1]);
  EXPECT_EQ(maps.find(RemoteAddr(0x600000)), nullptr);
  EXPECT_EQ(maps.find_object([](std::string_view b) { return b.starts_with("libgone"); }),
            "/opt/lib/libgone.so");

  // A deleted file is only reachable through map_files.
  auto paths = candidate_local_paths(1234, maps.entries()[4]);
  ASSERT_EQ(paths.size(), 1u);
  EXPECT_EQ(paths[0], "/proc/1234/map_files/7f0000001000-7f0000002000");
  paths = candidate_local_paths(1234, maps.entries()[1]);
  ASSERT_EQ(paths.size(), 3u);
  EXPECT_EQ(paths[1], "/proc/1234/root/usr/bin/python3.11");
  EXPECT_EQ(paths[2], "/usr/bin/python3.11");
}

TEST(ProcessMaps, SelfLibcSymbolsResolveToWhatTheLoaderUsed) {
  const ProcessMaps maps = ProcessMaps::read(getpid());
  auto libc_path = maps.find_object([](std::string_view b) { return b.starts_with("libc.so"); });
  ASSERT_TRUE(libc_path);
  std::string why;
  auto libc = open_mapped_object(getpid(), maps, *libc_path, &why);
  ASSERT_TRUE(libc) << why;
  EXPECT_NE(libc->bias, 0u);
  EXPECT_EQ(libc->bias % 4096, 0u);
  // Looked up through libc's own handle: RTLD_DEFAULT would find a
  // sanitizer's interceptors first.
  void* handle = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
  ASSERT_NE(handle, nullptr);
  for (const char* name : {"dlopen", "dlsym", "mmap", "__errno_location"}) {
    auto address = libc->symbol_address(name);
    ASSERT_TRUE(address) << name;
    EXPECT_EQ(address->value(), reinterpret_cast<uint64_t>(dlsym(handle, name))) << name;
  }
  dlclose(handle);
  // Preferred path: the mapped inode itself.
  EXPECT_NE(libc->local_path.find("/map_files/"), std::string::npos) << libc->local_path;
}

TEST(ProcessMaps, NoSuchProcess) {
  try {
    ProcessMaps::read(0x3ffffff0);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no process"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace gilstat::attach

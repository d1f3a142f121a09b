// src/common/procfs: the one reader of /proc, on this test process itself.
#include "common/procfs.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>

namespace gilstat::procfs {
namespace {

TEST(Procfs, Paths) {
  EXPECT_EQ(path(42, "status"), "/proc/42/status");
  EXPECT_EQ(path(42), "/proc/42");
  EXPECT_EQ(path(7, "fd/3"), "/proc/7/fd/3");
  EXPECT_EQ(self("exe"), "/proc/self/exe");
}

TEST(Procfs, OwnCommandLineAndStatus) {
  const auto args = nul_list(getpid(), "cmdline");
  ASSERT_FALSE(args.empty());
  EXPECT_NE(args[0].find("gilstat_unit_tests"), std::string::npos) << args[0];
  EXPECT_EQ(cmdline(getpid()).substr(0, args[0].size()), args[0]);

  const auto text = read(getpid(), "status");
  ASSERT_TRUE(text);
  const auto fields = parse_status(*text);
  EXPECT_EQ(fields.at("Pid"), std::to_string(getpid()));
  EXPECT_EQ(fields.at("TracerPid"), "0");
}

TEST(Procfs, MissingEntriesSayWhy) {
  int error = 0;
  EXPECT_FALSE(read(getpid(), "no-such-entry", &error));
  EXPECT_EQ(error, ENOENT);
  EXPECT_TRUE(nul_list(getpid(), "no-such-entry").empty());
  EXPECT_EQ(cmdline(-1), "");
}

TEST(Procfs, ParseStatusTrimsBlanksAndSkipsJunk) {
  const auto fields = parse_status("Name:\tpython3\nUid:\t0\t1\t2\t3\njunk line\nVmRSS:   12 kB\n");
  EXPECT_EQ(fields.at("Name"), "python3");
  EXPECT_EQ(fields.at("Uid"), "0\t1\t2\t3");
  EXPECT_EQ(fields.at("VmRSS"), "12 kB");
  EXPECT_EQ(fields.size(), 3u);
}

TEST(Procfs, OwnMemoryOpens) {
  const int fd = open_mem(getpid(), O_RDONLY);
  ASSERT_GE(fd, 0);
  EXPECT_NE(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
  close(fd);
  EXPECT_GE(loadavg_1min(), 0);
}

}  // namespace
}  // namespace gilstat::procfs

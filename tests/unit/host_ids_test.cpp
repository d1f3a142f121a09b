// A target in another PID namespace: NSpid parsing, the host ids in a
// report, and their round trip through a recording.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "common/pid_namespace.hpp"
#include "proto/recording.hpp"
#include "proto/recording_summary.hpp"
#include "report/host_ids.hpp"

namespace gilstat {
namespace {

TEST(HostIds, ParsesNspidOursAndInnermost) {
  const auto nested = parse_nspid("Name:\tpython3\nNSpid:\t12647\t40\t1\nPPid:\t1\n");
  ASSERT_TRUE(nested);
  EXPECT_EQ(nested->ours, 12647);
  EXPECT_EQ(nested->inner, 1);
  const auto flat = parse_nspid("NSpid:\t777\n");
  ASSERT_TRUE(flat);
  EXPECT_EQ(flat->ours, 777);
  EXPECT_EQ(flat->inner, 777);
  EXPECT_FALSE(parse_nspid("Name:\tx\n"));
  EXPECT_FALSE(parse_nspid("NSpid:\t\n"));
  EXPECT_FALSE(parse_nspid("NSpid:\t12x\t1\n"));
  EXPECT_FALSE(parse_nspid("NSpid:\t-4\t1\n"));
  EXPECT_FALSE(parse_nspid("NSpid:\t99999999999\t1\n"));
}

TEST(HostIds, OwnProcessIsNotNamespaced) {
  HostIds ids(getpid());
  EXPECT_FALSE(ids.namespaced());
  EXPECT_EQ(ids.inner_pid(), getpid());
  EXPECT_EQ(ids.host_tid(static_cast<uint32_t>(gettid())), static_cast<uint32_t>(gettid()));
}

report::Report two_threads() {
  report::Report r;
  r.pid = 1;
  r.threads.resize(2);
  r.threads[0].tid = 2;
  r.threads[1].tid = 3;
  return r;
}

TEST(HostIds, AReportGetsTheHostIdsOrSaysTheyAreUnknown) {
  report::Report r = two_threads();
  report::apply_host_ids(r, 4242, {{2, 4243}});
  EXPECT_EQ(r.host_pid, 4242);
  EXPECT_EQ(r.threads[0].host_tid, 4243u);
  EXPECT_EQ(r.threads[1].host_tid, 0u);
  EXPECT_EQ(report::shown_tid(r, r.threads[0]), "4243");
  EXPECT_EQ(report::shown_tid(r, r.threads[1]), "?");

  report::Report same = two_threads();
  same.pid = 4242;
  report::apply_host_ids(same, 4242, {});  // not namespaced: nothing changes
  EXPECT_EQ(same.host_pid, 0);
  EXPECT_EQ(report::shown_tid(same, same.threads[1]), "3");
}

TEST(HostIds, RoundTripThroughARecording) {
  const std::string path =
      (std::filesystem::temp_directory_path() / ("gilstat-hostids-" + std::to_string(getpid())))
          .string();
  {
    proto::RecMeta meta;
    meta.pid = 1;
    proto::RecordingWriter w(path, meta);
    w.meta(meta);
    const proto::TidPair first[] = {{1, 4242}, {2, 4243}};
    w.host_ids(4242, first);
    const proto::TidPair later[] = {{3, 4250}};
    w.host_ids(4242, later);
    w.end({100, 1.0, 0});
    w.close();
  }
  proto::RecordingSummary summary;
  const proto::ReadResult read = proto::read_recording(path, summary);
  std::filesystem::remove(path);
  EXPECT_TRUE(read.complete);
  EXPECT_EQ(summary.host_pid(), 4242);
  const std::map<uint32_t, uint32_t> want{{1, 4242}, {2, 4243}, {3, 4250}};
  EXPECT_EQ(summary.host_tids(), want);
}

}  // namespace
}  // namespace gilstat

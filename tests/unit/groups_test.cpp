// Thread groups: the key, and that a group is exactly the sum of its members.
#include "report/groups.hpp"

#include <gtest/gtest.h>

namespace gilstat::report {
namespace {

TEST(GroupKey, DigitRunsBecomeN) {
  EXPECT_EQ(group_key("Thread-1904 (process_request_thread)"), "Thread-N (process_request_thread)");
  EXPECT_EQ(group_key("ThreadPoolExecutor-0_12"), "ThreadPoolExecutor-N_N");
  EXPECT_EQ(group_key("native-4711"), "native-N");
  EXPECT_EQ(group_key("MainThread"), "MainThread");
  EXPECT_EQ(group_key("worker007b2"), "workerNbN");
  EXPECT_EQ(group_key(""), "");
}

ThreadReport row(uint32_t tid, const char* name, double held, double wait, uint32_t gil = 0) {
  ThreadReport t;
  t.tid = tid;
  t.name = name;
  t.gil = gil;
  t.held_ns = held;
  t.wait_total_ns = wait;
  t.released_ns = 1000 - held - wait;
  t.lifetime_ns = 1000;
  t.acquisitions = tid;
  return t;
}

TEST(GroupThreads, SumsAreTheMembersAndEveryThreadIsInOneGroup) {
  std::vector<ThreadReport> threads;
  for (uint32_t i = 0; i < 7; ++i)
    threads.push_back(row(100 + i, ("Thread-" + std::to_string(i)).c_str(), 10.0 * i, 1));
  threads.push_back(row(5, "MainThread", 500, 0));
  threads.push_back(row(6, "Thread-99", 1, 1, /*gil=*/1));  // same key, other GIL
  ThreadReport own = row(7, "gilstat", 2, 2);
  own.own = true;
  threads.push_back(own);

  const auto groups = group_threads(threads);
  ASSERT_EQ(groups.size(), 4u);
  EXPECT_EQ(groups[0].key, "MainThread");  // by held time
  const GroupReport& pool = groups[1];
  EXPECT_EQ(pool.key, "Thread-N");
  EXPECT_EQ(pool.gil, 0u);
  EXPECT_EQ(pool.tids.size(), 7u);
  EXPECT_DOUBLE_EQ(pool.held_ns, 210);
  EXPECT_DOUBLE_EQ(pool.wait_total_ns, 7);
  EXPECT_DOUBLE_EQ(pool.lifetime_ns, 7000);
  EXPECT_EQ(pool.acquisitions, 100u + 101 + 102 + 103 + 104 + 105 + 106);
  EXPECT_DOUBLE_EQ(pool.member_held_p50_ns, 30);
  EXPECT_DOUBLE_EQ(pool.member_held_p99_ns, 60);
  EXPECT_DOUBLE_EQ(pool.member_held_max_ns, 60);
  size_t members = 0;
  double held = 0;
  for (const auto& g : groups) {
    members += g.tids.size();
    held += g.held_ns;
  }
  EXPECT_EQ(members, threads.size());
  double want = 0;
  for (const auto& t : threads) want += t.held_ns;
  EXPECT_DOUBLE_EQ(held, want);
  bool own_group = false;
  for (const auto& g : groups) own_group |= g.own && g.tids == std::vector<uint32_t>{7};
  EXPECT_TRUE(own_group);
}

}  // namespace
}  // namespace gilstat::report

// The dump's verdicts (src/cli/dump_locks.cpp): which GIL holders and which
// threads waiting for each other's locks are deadlocked, from the threads'
// states and the locks they wait for, without a process.
#include "cli/dump_locks.hpp"

#include <gtest/gtest.h>

namespace gilstat::cli {
namespace {

using pyruntime::GilRole;

LockThread thread(pid_t tid, const char* name, GilRole role) {
  LockThread t;
  t.tid = tid;
  t.name = name;
  t.role = role;
  if (role != GilRole::kNeither) t.gil = 0;
  return t;
}

LockWait waits(pid_t tid, uint64_t address, const char* kind, std::optional<pid_t> owner) {
  LockWait w;
  w.tid = tid;
  w.address = address;
  w.kind = kind;
  w.owner = owner;
  return w;
}

TEST(DumpVerdict, HolderBlockedByALockWhoseOwnerWaitsForTheGil) {
  const std::vector<LockThread> threads = {thread(1, "holder", GilRole::kHolds),
                                           thread(2, "owner", GilRole::kWaits)};
  const auto v = judge(threads, {waits(1, 0x10, "pthread mutex", 2)});
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].kind, "deadlock");
  EXPECT_EQ(v[0].other, 2);
  EXPECT_EQ(v[0].cycle, (std::vector<pid_t>{1, 2}));
  EXPECT_EQ(v[0].text,
            "deadlock: holder (tid 1) holds the GIL and waits for pthread mutex 0x10, which "
            "owner (tid 2) owns while it waits for the GIL; neither can go on");
}

TEST(DumpVerdict, ACycleThroughAnRLockAndTheGil) {
  const std::vector<LockThread> threads = {thread(1, "holder", GilRole::kHolds),
                                           thread(2, "waiter", GilRole::kNeither),
                                           thread(3, "keeper", GilRole::kWaits)};
  const auto v = judge(threads, {waits(1, 0x10, "pthread mutex", 2), waits(2, 0x20, "RLock", 3)});
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].kind, "deadlock");
  EXPECT_EQ(v[0].cycle, (std::vector<pid_t>{1, 2, 3}));
  EXPECT_EQ(v[0].text,
            "deadlock: holder (tid 1) holds the GIL and waits for pthread mutex 0x10, which "
            "waiter (tid 2) owns while it waits for RLock 0x20, which keeper (tid 3) owns while "
            "it waits for the GIL; none of them can go on");
}

TEST(DumpVerdict, ACycleOfLocksIsReportedOnceWithoutAGil) {
  // 1 and 2 wait for each other; 3 waits for 1 (blocked by the cycle, not in it).
  const std::vector<LockThread> threads = {thread(1, "a", GilRole::kNeither),
                                           thread(2, "b", GilRole::kNeither),
                                           thread(3, "c", GilRole::kNeither)};
  const auto v = judge(threads, {waits(1, 0x10, "RLock", 2), waits(2, 0x20, "RLock", 1),
                                 waits(3, 0x30, "RLock", 1)});
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].kind, "deadlock");
  EXPECT_FALSE(v[0].gil.has_value());
  EXPECT_EQ(v[0].holder, 0);
  EXPECT_EQ(v[0].cycle, (std::vector<pid_t>{1, 2}));
  EXPECT_EQ(v[0].lock, 0x10u);
  EXPECT_EQ(v[0].text,
            "deadlock: a (tid 1) waits for RLock 0x10, which b (tid 2) owns while it waits for "
            "RLock 0x20, which a (tid 1) owns; neither can go on");
}

TEST(DumpVerdict, NoCycleWhenAnOwnerIsUnknownOrRuns) {
  const std::vector<LockThread> threads = {thread(1, "holder", GilRole::kHolds),
                                           thread(2, "other", GilRole::kNeither),
                                           thread(3, "waiting", GilRole::kWaits)};
  auto v = judge(threads, {waits(1, 0x10, "Python lock", std::nullopt)});
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].kind, "holder_blocked");
  EXPECT_NE(v[0].text.find("owner unknown"), std::string::npos);
  v = judge(threads, {waits(1, 0x10, "RLock", 2)});  // its owner runs: it may let go
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].kind, "holder_blocked");
  EXPECT_EQ(v[0].other, 2);
  EXPECT_TRUE(v[0].cycle.empty());
  v = judge(threads, {});
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].kind, "holder_not_releasing");
  // Of unknown kind: said so.
  v = judge(threads, {waits(1, 0x10, "unknown", std::nullopt)});
  EXPECT_NE(v[0].text.find("a lock of unknown kind 0x10"), std::string::npos) << v[0].text;
}

}  // namespace
}  // namespace gilstat::cli

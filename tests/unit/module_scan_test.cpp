// The probe's count of objects left out of a full module table
// (probe_ext/probe/module_scan.hpp), driven the way its scan drives it:
// every scan walks every loaded object and finds again those it could not
// hook before.
#include "../../probe_ext/probe/module_scan.hpp"

#include <gtest/gtest.h>

#include <set>

namespace gilstat {
namespace {

// A module table of `capacity` entries and the probe's scan over `loaded`
// (objects that import the C API): the not-hooked count it publishes.
struct ScanModel {
  uint32_t capacity;
  std::set<int> table;
  probe::ModuleScanCount count;

  uint32_t scan(const std::set<int>& loaded) {
    count.begin();
    for (int object : loaded) {
      if (table.count(object)) continue;
      count.found_new();
      if (table.size() < capacity) {
        table.insert(object);
        count.hooked();
      }
    }
    return count.left_out(static_cast<uint32_t>(table.size()), capacity);
  }
};

TEST(ModuleScanCount, AnObjectLeftOutIsCountedOnceHoweverManyScansSeeIt) {
  ScanModel m{4, {}, {}};
  EXPECT_EQ(m.scan({1, 2, 3, 4, 5, 6}), 2u);
  // Later scans (another object loaded, or the probe thread's periodic check)
  // find 5 and 6 again: still two, not four, then six.
  EXPECT_EQ(m.scan({1, 2, 3, 4, 5, 6}), 2u);
  EXPECT_EQ(m.scan({1, 2, 3, 4, 5, 6, 7}), 3u);
  // One left out was unloaded: it is no longer left out.
  EXPECT_EQ(m.scan({1, 2, 3, 4, 6, 7}), 2u);
}

TEST(ModuleScanCount, NothingIsLeftOutWhileTheTableHasRoom) {
  ScanModel m{8, {}, {}};
  EXPECT_EQ(m.scan({1, 2, 3}), 0u);
  EXPECT_EQ(m.scan({1, 2, 3, 4}), 0u);
  // New objects not hooked in a pass (more than one pass takes) while there is
  // room are taken by the next scan, not counted as left out.
  probe::ModuleScanCount c;
  c.begin();
  for (int i = 0; i < 5; ++i) c.found_new();
  c.hooked();
  EXPECT_EQ(c.left_out(3, 8), 0u);
  EXPECT_TRUE(c.rescan(true, 3, 8));
  // A full table takes nothing more: no rescan for the objects left out.
  EXPECT_FALSE(c.rescan(true, 8, 8));
  EXPECT_EQ(c.left_out(8, 8), 4u);
}

}  // namespace
}  // namespace gilstat

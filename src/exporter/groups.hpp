// Which thread groups of a target get their own series.  A service may start
// any number of kinds of threads; the exporter keeps at most `max_groups`
// (group, GIL) series per target and counts every other group in one
// "other" series per GIL.  A group takes a slot the first time it is seen
// while slots are free (new groups of one scrape by held time, busiest
// first) and keeps it for the target's life; once the slots are full every
// new group goes to "other" for good.  So each series sums a fixed set of
// threads, every counter only grows, and exported + other = all threads.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "report/prometheus.hpp"
#include "report/report.hpp"

namespace gilstat::exporter {

inline constexpr const char* kOtherGroup = "other";

struct GroupRow {
  std::string group;  // a group key, or kOtherGroup
  uint32_t gil = 0;
  report::ThreadSums sums;
  double created = 0;  // unix seconds: when the series first appeared
};

class GroupSelection {
 public:
  explicit GroupSelection(size_t max_groups) : max_groups_(max_groups) {}

  // The rows of `groups` (a report's, every thread in one group): one per
  // exported group, then one "other" per GIL (also when empty, so that the
  // series exists from the start); sorted by GIL, exported first.
  // now_unix stamps series that appear.
  std::vector<GroupRow> rows(const std::vector<report::GroupReport>& groups, double now_unix);

  size_t exported() const { return exported_.size(); }

 private:
  using Key = std::pair<uint32_t, std::string>;  // (GIL, group key)
  size_t max_groups_;
  std::map<Key, double> exported_;     // -> created
  std::map<uint32_t, double> others_;  // GIL -> created of its "other" row
};

}  // namespace gilstat::exporter

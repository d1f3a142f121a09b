#include "exporter/groups.hpp"

#include <algorithm>

namespace gilstat::exporter {
namespace {

void add(report::ThreadSums& to, const report::ThreadSums& s) {
  to.held_ns += s.held_ns;
  to.wait_ns += s.wait_ns;
  to.released_ns += s.released_ns;
  to.acquisitions += s.acquisitions;
  to.forced_handoffs += s.forced_handoffs;
}

}  // namespace

std::vector<GroupRow> GroupSelection::rows(const std::vector<report::GroupReport>& groups,
                                           double now_unix) {
  // New groups, busiest first, take the free slots.
  std::vector<const report::GroupReport*> fresh;
  // A thread kind named "other" is counted in the other series (one series
  // per label set).
  for (const report::GroupReport& g : groups)
    if (g.key != kOtherGroup && !exported_.count({g.gil, g.key})) fresh.push_back(&g);
  std::stable_sort(fresh.begin(), fresh.end(),
                   [](const auto* a, const auto* b) { return a->held_ns > b->held_ns; });
  for (const report::GroupReport* g : fresh) {
    // Slots never free up, so a group counted in "other" once never leaves it.
    if (exported_.size() >= max_groups_) break;
    exported_.emplace(Key{g->gil, g->key}, now_unix);
  }
  std::map<Key, GroupRow> exported_rows;
  std::map<uint32_t, GroupRow> other_rows;
  for (const auto& [key, created] : exported_)
    exported_rows[key] = GroupRow{key.second, key.first, {}, created};
  for (const report::GroupReport& g : groups) {
    auto it = exported_rows.find({g.gil, g.key});
    if (it != exported_rows.end()) {
      add(it->second.sums, report::sums_of(g));
      continue;
    }
    auto [other, added] = other_rows.try_emplace(g.gil);
    if (added) other->second = GroupRow{kOtherGroup, g.gil, {}, 0};
    add(other->second.sums, report::sums_of(g));
  }
  // Every GIL seen gets its "other" row.
  for (const auto& [key, row] : exported_rows)
    other_rows.try_emplace(key.first, GroupRow{kOtherGroup, key.first, {}, 0});
  std::vector<GroupRow> out;
  for (auto& [gil, other] : other_rows) {
    auto [created, added] = others_.try_emplace(gil, now_unix);
    other.created = created->second;
    for (auto it = exported_rows.lower_bound({gil, std::string()});
         it != exported_rows.end() && it->first.first == gil; ++it)
      out.push_back(it->second);
    out.push_back(other);
  }
  return out;
}

}  // namespace gilstat::exporter

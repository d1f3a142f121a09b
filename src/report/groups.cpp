#include "report/groups.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <tuple>

namespace gilstat::report {

std::string group_key(std::string_view name) {
  std::string key;
  key.reserve(name.size());
  for (size_t i = 0; i < name.size();) {
    if (std::isdigit(static_cast<unsigned char>(name[i]))) {
      key += 'N';
      while (i < name.size() && std::isdigit(static_cast<unsigned char>(name[i]))) ++i;
    } else {
      key += name[i++];
    }
  }
  return key;
}

std::string group_key(const ThreadReport& t) {
  return t.own ? std::string("gilstat") : group_key(t.name);
}

namespace {

using Key = std::tuple<bool, std::string, uint32_t>;

Key key_of(const ThreadReport& t) { return {t.own, group_key(t), t.gil}; }

// Nearest-rank percentile of sorted values.
double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const auto rank = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

// Stats of several threads' durations: the exact parts summed, the
// percentiles from their merged histograms.
DurationStats merged_stats(const std::vector<const ThreadReport*>& members,
                           const DurationStats ThreadReport::*stats,
                           const Histogram ThreadReport::*hist) {
  if (members.size() == 1) return members.front()->*stats;
  Histogram all;
  DurationStats s;
  for (const ThreadReport* t : members) {
    all.merge(t->*hist);
    s.max = std::max(s.max, (t->*stats).max);
    s.total += (t->*stats).total;
    s.count += (t->*stats).count;
  }
  s.p50 = std::min(all.percentile(0.50), s.max);
  s.p90 = std::min(all.percentile(0.90), s.max);
  s.p99 = std::min(all.percentile(0.99), s.max);
  return s;
}

GroupReport sum_members(const Key& k, const std::vector<const ThreadReport*>& members,
                        size_t min_group_size) {
  GroupReport g;
  g.own = std::get<0>(k);
  g.key = std::get<1>(k);
  g.gil = std::get<2>(k);
  std::vector<double> helds;
  for (const ThreadReport* t : members) {
    if (t->exited_threads)
      g.exited_threads += t->exited_threads;
    else
      g.tids.push_back(t->tid);
    g.lifetime_ns += t->lifetime_ns;
    g.held_ns += t->held_ns;
    g.wait_total_ns += t->wait_total_ns;
    g.released_ns += t->released_ns;
    g.acquisitions += t->acquisitions;
    g.forced_handoffs += t->forced_handoffs;
    g.drops += t->drops;
    g.anomalies += t->anomalies;
    g.drop_latency_count += t->drop_latency_ns.count;
    g.drop_latency_max_ns = std::max(g.drop_latency_max_ns, t->drop_latency_ns.max);
    helds.push_back(t->held_ns);
  }
  std::sort(helds.begin(), helds.end());
  g.member_held_p50_ns = percentile(helds, 0.50);
  g.member_held_p99_ns = percentile(helds, 0.99);
  g.member_held_max_ns = helds.empty() ? 0 : helds.back();
  g.wait_ns = merged_stats(members, &ThreadReport::wait_ns, &ThreadReport::wait_hist);
  g.hold_ns = merged_stats(members, &ThreadReport::hold_ns, &ThreadReport::hold_hist);
  g.folded = members.size() >= min_group_size;
  return g;
}

// Members by group, each group's in the order of `threads`.
std::map<Key, std::vector<const ThreadReport*>> by_group(const std::vector<ThreadReport>& threads) {
  std::map<Key, std::vector<const ThreadReport*>> out;
  for (const ThreadReport& t : threads) out[key_of(t)].push_back(&t);
  return out;
}

bool busier(const GroupReport& a, const GroupReport& b) {
  return std::tuple(-a.held_ns, a.key, a.gil, a.tids) <
         std::tuple(-b.held_ns, b.key, b.gil, b.tids);
}

}  // namespace

std::vector<GroupReport> group_threads(const std::vector<ThreadReport>& threads,
                                       size_t min_group_size) {
  std::vector<GroupReport> out;
  for (const auto& [k, members] : by_group(threads))
    out.push_back(sum_members(k, members, min_group_size));
  std::sort(out.begin(), out.end(), busier);
  return out;
}

std::vector<TableRow> table_rows(const std::vector<ThreadReport>& threads, size_t min_group_size) {
  std::vector<TableRow> rows;
  for (auto& [k, members] : by_group(threads)) {
    if (members.size() >= min_group_size) {
      rows.push_back({sum_members(k, members, min_group_size), members});
      continue;
    }
    for (const ThreadReport* t : members) {
      GroupReport one = sum_members(k, {t}, min_group_size);
      one.folded = false;
      rows.push_back({std::move(one), {t}});
    }
  }
  std::sort(rows.begin(), rows.end(),
            [](const TableRow& a, const TableRow& b) { return busier(a.sums, b.sums); });
  return rows;
}

}  // namespace gilstat::report

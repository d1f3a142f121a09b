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

namespace {
// Nearest-rank percentile of sorted values.
double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const auto rank = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}
}  // namespace

std::vector<GroupReport> group_threads(const std::vector<ThreadReport>& threads) {
  std::map<std::tuple<bool, std::string, uint32_t>, GroupReport> by_key;
  std::map<std::tuple<bool, std::string, uint32_t>, std::vector<double>> helds;
  for (const ThreadReport& t : threads) {
    auto k = std::tuple(t.own, t.own ? std::string("gilstat") : group_key(t.name), t.gil);
    GroupReport& g = by_key[k];
    g.key = std::get<1>(k);
    g.gil = t.gil;
    g.own = t.own;
    g.tids.push_back(t.tid);
    g.lifetime_ns += t.lifetime_ns;
    g.held_ns += t.held_ns;
    g.wait_total_ns += t.wait_total_ns;
    g.released_ns += t.released_ns;
    g.acquisitions += t.acquisitions;
    g.forced_handoffs += t.forced_handoffs;
    g.drops += t.drops;
    g.anomalies += t.anomalies;
    helds[k].push_back(t.held_ns);
  }
  std::vector<GroupReport> out;
  out.reserve(by_key.size());
  for (auto& [k, g] : by_key) {
    std::vector<double>& h = helds[k];
    std::sort(h.begin(), h.end());
    g.member_held_p50_ns = percentile(h, 0.50);
    g.member_held_p99_ns = percentile(h, 0.99);
    g.member_held_max_ns = h.back();
    out.push_back(std::move(g));
  }
  std::sort(out.begin(), out.end(), [](const GroupReport& a, const GroupReport& b) {
    return std::tuple(-a.held_ns, a.key, a.gil) < std::tuple(-b.held_ns, b.key, b.gil);
  });
  return out;
}

}  // namespace gilstat::report

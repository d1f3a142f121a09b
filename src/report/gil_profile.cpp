#include "report/gil_profile.hpp"

#include <algorithm>
#include <set>
#include <utility>

#include "report/groups.hpp"
#include "report/report.hpp"

namespace gilstat::report {
namespace {

using FnKey = std::pair<std::string, std::string>;  // (function, file)

// Self and total time per function, and self time per line to pick the line shown.
struct FnTotals {
  double self_ns = 0, total_ns = 0;
  std::map<uint32_t, double> self_by_line;
};

class Accumulator {
 public:
  void add(const std::vector<uint32_t>& stack, const stacks::StackTable& t, double ns) {
    std::set<FnKey> seen;
    bool innermost = true;
    for (uint32_t id : stack) {
      const stacks::Frame* f = t.frame(id);
      if (!f || f->kind != stacks::FrameKind::Python) continue;
      FnKey key{f->function, f->file};
      FnTotals& fn = fns_[key];
      if (innermost) {
        fn.self_ns += ns;
        fn.self_by_line[f->line] += ns;
        innermost = false;
      }
      if (seen.insert(key).second) fn.total_ns += ns;
    }
  }
  std::vector<ProfileEntry> top(size_t n) const {
    std::vector<ProfileEntry> out;
    for (const auto& [key, fn] : fns_) {
      ProfileEntry e{key.first, key.second, 0, fn.self_ns, fn.total_ns};
      double best = -1;
      for (const auto& [line, ns] : fn.self_by_line)
        if (ns > best) best = ns, e.line = line;
      out.push_back(std::move(e));
    }
    std::sort(out.begin(), out.end(), [](const ProfileEntry& a, const ProfileEntry& b) {
      return std::tie(b.self_ns, b.total_ns, a.function, a.file) <
             std::tie(a.self_ns, a.total_ns, b.function, b.file);
    });
    if (out.size() > n) out.resize(n);
    return out;
  }

 private:
  std::map<FnKey, FnTotals> fns_;
};

std::string folded_stack(const std::string& group, const std::vector<uint32_t>& stack,
                         const stacks::StackTable& t) {
  std::string s = stacks::folded_text(group);
  for (auto it = stack.rbegin(); it != stack.rend(); ++it)
    if (const stacks::Frame* f = t.frame(*it)) s += ";" + stacks::folded_text(stacks::describe(*f));
  return s;
}

}  // namespace

void ProfileCounter::add(const stacks::Sample& s) {
  if (s.reason != stacks::SampleReason::Profile) return;
  const auto key = std::make_tuple(s.tid, s.gil, s.stack);
  auto it = counts_.find(key);
  if (it == counts_.end()) {
    if (counts_.size() >= kMaxKeys) {
      ++lost_;
      return;
    }
    it = counts_.emplace(key, 0).first;
  }
  ++it->second;
}

GilProfile ProfileCounter::finish(const Report& r, const stacks::StackTable& table) const {
  GilProfile p;
  if (counts_.empty()) return p;  // not sampled at all: no profile, not "all unsampled"
  // Samples per (tid, gil) row, to share each row's held time.
  std::map<std::pair<uint32_t, uint32_t>, uint64_t> per_row;
  for (const auto& [key, n] : counts_) per_row[{std::get<0>(key), std::get<1>(key)}] += n;

  // Per group: its sampled rows' stacks (stack -> samples) and the held
  // time of its members never sampled (short-lived threads), which is
  // spread over the group's samples: same kind of thread, same code.
  struct Group {
    double held_ns = 0, unsampled_ns = 0;
    uint64_t samples = 0;
    std::vector<std::pair<uint32_t, double>> weighted;  // (stack, ns) from sampled rows
    std::map<uint32_t, uint64_t> stack_samples;
  };
  std::map<std::string, Group> groups;
  for (const ThreadReport& t : r.threads) {
    if (t.own || t.held_ns <= 0) continue;
    Group& g = groups[group_key(t)];
    g.held_ns += t.held_ns;
    const auto row = per_row.find({t.tid, t.gil});
    if (row == per_row.end()) {
      g.unsampled_ns += t.held_ns;
      continue;
    }
    p.sampled_held_ns += t.held_ns;
    p.samples += row->second;
    g.samples += row->second;
    const double per_sample = t.held_ns / static_cast<double>(row->second);
    for (auto it = counts_.lower_bound({t.tid, t.gil, 0});
         it != counts_.end() && std::get<0>(it->first) == t.tid && std::get<1>(it->first) == t.gil;
         ++it) {
      g.weighted.emplace_back(std::get<2>(it->first), per_sample * static_cast<double>(it->second));
      g.stack_samples[std::get<2>(it->first)] += it->second;
    }
  }

  Accumulator all;
  std::map<std::string, Accumulator> by_group;
  std::map<std::string, double> folded;
  for (auto& [key, g] : groups) {
    if (g.samples == 0) {
      p.unsampled_held_ns += g.unsampled_ns;
      folded[stacks::folded_text(key) + ";(not sampled)"] += g.unsampled_ns;
      continue;
    }
    p.spread_held_ns += g.unsampled_ns;
    for (const auto& [stack, n] : g.stack_samples)
      g.weighted.emplace_back(
          stack, g.unsampled_ns * static_cast<double>(n) / static_cast<double>(g.samples));
    for (const auto& [id, ns] : g.weighted) {
      const std::vector<uint32_t>* stack = table.stack(id);
      if (!stack) {
        folded[stacks::folded_text(key) + ";(stack missing)"] += ns;
        continue;
      }
      all.add(*stack, table, ns);
      by_group[key].add(*stack, table, ns);
      folded[folded_stack(key, *stack, table)] += ns;
    }
    p.groups.push_back({key, g.held_ns, {}});
  }
  p.functions = all.top(GilProfile::kEntries);
  for (GroupProfile& gp : p.groups)
    gp.functions = by_group[gp.group].top(GilProfile::kGroupEntries);
  std::sort(p.groups.begin(), p.groups.end(), [](const GroupProfile& a, const GroupProfile& b) {
    return std::tie(b.held_ns, a.group) < std::tie(a.held_ns, b.group);
  });
  for (auto& [stack, ns] : folded) p.folded.push_back({stack, ns});
  return p;
}

}  // namespace gilstat::report

#include "report/hogs.hpp"

#include <fmt/core.h>

#include <algorithm>

#include "report/report.hpp"

namespace gilstat::report {

void HogCounter::add_sample(const stacks::Sample& s) {
  if (s.reason != stacks::SampleReason::LongHold || s.gil > 0xff || s.ts < s.hold_start) return;
  const auto gil = static_cast<uint8_t>(s.gil);
  auto it = by_start_.find({s.tid, gil, s.hold_start});
  if (it == by_start_.end()) {
    if (holds_.size() >= kMaxHolds) {
      ++lost_;
      return;
    }
    Hold h;
    h.tid = s.tid;
    h.gil = gil;
    h.start = s.hold_start;
    holds_.push_back(std::move(h));
    it = by_start_.emplace(std::make_tuple(s.tid, gil, s.hold_start), holds_.size() - 1).first;
    open_[{s.tid, gil}].push_back(holds_.size() - 1);
  }
  Hold& h = holds_[it->second];
  if (h.samples.size() < kMaxSamplesPerHold) h.samples.emplace_back(s.ts, s.stack);
}

void HogCounter::add_events(uint32_t tid, const proto::Event* events, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const proto::Event& ev = events[i];
    const uint64_t key = uint64_t{tid} << 8 | ev.gil;
    switch (static_cast<proto::EventKind>(ev.kind)) {
      case proto::EventKind::WaitBegin:
        wait_begin_[key] = ev.ts;
        break;
      case proto::EventKind::WaitAbort:
        wait_begin_.erase(key);
        break;
      case proto::EventKind::Acquire: {
        auto w = wait_begin_.find(key);
        if (w == wait_begin_.end()) break;
        const Wait wait{tid, w->second, ev.ts};
        wait_begin_.erase(w);
        // A wait ends only once the GIL is free: after the end of every
        // hold it overlapped, so those holds are among the latest.
        const size_t from = holds_.size() > kRecentHolds ? holds_.size() - kRecentHolds : 0;
        for (size_t h = from; h < holds_.size(); ++h) {
          Hold& hold = holds_[h];
          if (hold.gil != ev.gil || hold.tid == tid || wait.end <= hold.start) continue;
          if (hold.end != 0 && wait.begin >= hold.end) continue;
          if (hold.waits.size() < kMaxWaitsPerHold) hold.waits.push_back(wait);
        }
        break;
      }
      case proto::EventKind::Release: {
        // A thread's events come in its order: the first release after a
        // hold's start is its end.
        auto it = open_.find({tid, ev.gil});
        if (it == open_.end()) break;
        std::vector<size_t>& open = it->second;
        for (size_t j = 0; j < open.size();) {
          if (holds_[open[j]].start <= ev.ts) {
            holds_[open[j]].end = ev.ts;
            open[j] = open.back();
            open.pop_back();
          } else {
            ++j;
          }
        }
        if (open.empty()) open_.erase(it);
        break;
      }
      default:
        break;
    }
  }
}

HogsReport HogCounter::finish(const Report& r, const stacks::StackTable& table,
                              uint64_t window_end) const {
  HogsReport out;
  out.lost = lost_;
  const double f = r.ns_per_tick;
  std::map<uint32_t, std::string> names;
  for (const ThreadReport& t : r.threads)
    names[t.tid] =
        t.name.empty() ? fmt::format("{}", t.tid) : fmt::format("{} ({})", t.name, t.tid);
  auto name_of = [&](uint32_t tid) {
    auto it = names.find(tid);
    return it != names.end() ? it->second : fmt::format("{}", tid);
  };
  struct Acc {
    uint64_t holds = 0;
    double held_ns = 0, longest_ns = 0, caused_ns = 0;
    std::set<std::string> waiting;
  };
  std::map<uint32_t, Acc> by_stack;
  std::map<uint32_t, HogEnd> by_end;  // by the stack of each hold's last sample
  for (const Hold& h : holds_) {
    const uint64_t end = h.end ? h.end : std::max(window_end, h.start);
    if (h.samples.empty()) continue;
    ++out.holds;
    out.samples += h.samples.size();
    const double whole_ns = static_cast<double>(end - h.start) * f;
    double caused_ns = 0;
    std::set<std::string> waiting;
    for (const Wait& w : h.waits) {
      const uint64_t a = std::max(w.begin, h.start), b = std::min(w.end, end);
      if (b <= a) continue;
      caused_ns += static_cast<double>(b - a) * f;
      waiting.insert(name_of(w.tid));
    }
    std::set<uint32_t> seen;
    for (size_t i = 0; i < h.samples.size(); ++i) {
      const uint64_t from = i == 0 ? h.start : std::min(h.samples[i].first, end);
      const uint64_t to = i + 1 < h.samples.size() ? std::min(h.samples[i + 1].first, end) : end;
      const double part_ns = to > from ? static_cast<double>(to - from) * f : 0;
      Acc& acc = by_stack[h.samples[i].second];
      acc.held_ns += part_ns;
      acc.caused_ns += whole_ns > 0 ? caused_ns * part_ns / whole_ns : 0;
      if (seen.insert(h.samples[i].second).second) {
        ++acc.holds;
        acc.longest_ns = std::max(acc.longest_ns, whole_ns);
        acc.waiting.insert(waiting.begin(), waiting.end());
      }
    }
    out.caused_wait_ns += caused_ns;
    out.held_ns += whole_ns;
    HogEnd& ended = by_end[h.samples.back().second];
    ++ended.holds;
    ended.held_ns += whole_ns;
  }
  for (auto& [id, ended] : by_end) {
    if (const std::vector<uint32_t>* stack = table.stack(id))
      for (uint32_t fid : *stack)
        if (const stacks::Frame* fr = table.frame(fid); fr && fr->kind == stacks::FrameKind::Native)
          ended.objects.push_back(fr->object);
    out.ends.push_back(std::move(ended));
  }
  for (const auto& [id, acc] : by_stack) {
    HogEntry e;
    if (const std::vector<uint32_t>* stack = table.stack(id)) {
      for (uint32_t fid : *stack)
        if (const stacks::Frame* fr = table.frame(fid)) e.stack.push_back(*fr);
    }
    e.holds = acc.holds;
    e.held_ns = acc.held_ns;
    e.longest_ns = acc.longest_ns;
    e.caused_wait_ns = acc.caused_ns;
    for (const std::string& w : acc.waiting) {
      if (e.waiting.size() >= HogEntry::kWaiters) break;
      e.waiting.push_back(w);
    }
    out.entries.push_back(std::move(e));
  }
  std::stable_sort(out.entries.begin(), out.entries.end(),
                   [](const HogEntry& a, const HogEntry& b) { return a.held_ns > b.held_ns; });
  if (out.entries.size() > HogsReport::kEntries) out.entries.resize(HogsReport::kEntries);
  return out;
}

}  // namespace gilstat::report

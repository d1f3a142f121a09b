#include "cli/outside_names.hpp"

#include <fmt/core.h>

#include <iostream>

#include "common/error.hpp"
#include "common/pid_namespace.hpp"
#include "common/procfs.hpp"
#include "pyruntime/runtime_reader.hpp"
#include "pyruntime/thread_gil_state.hpp"

namespace gilstat::cli {

namespace {

// The GIL's exact acquisition count as the probe keeps it (GilSlot).
uint64_t acquisitions(const proto::ShmRegion& region, uint32_t i) {
  return region.header().gils[i].acquisitions.load(std::memory_order_acquire);
}

// The id the probe reports for host thread `tid` (they differ when the
// target is in another PID namespace: the kernel's NSpid line says), 0 when
// unknown.
pid_t probe_tid(pid_t pid, pid_t tid) {
  const auto status = procfs::read(pid, fmt::format("task/{}/status", tid));
  const auto ids = status ? parse_nspid(*status) : std::nullopt;
  return ids && ids->ours == tid ? ids->inner : 0;
}

// Tells `capture` which threads held or waited for each armed GIL at the
// arm.  The holder: the GIL's state read now must be the one the probe saw
// at the arm, untouched since: no acquisition counted (before and after
// reading), still locked, and its last holder the arm's.  Then nobody took
// it in between, so the holder never let go (a release followed by nobody
// taking it leaves it unlocked).  A wrong guess cannot last: a thread's
// own events, from its first one on, override what is said here.  Waiters:
// the threads asleep in take_gil now (pyruntime::gil_states); one that
// began waiting after the arm has a WaitBegin event, which overrides it.
void note_state_at_arm(const attach::PreflightResult& target, const proto::ShmRegion& region,
                       const pyruntime::PySnapshot& snap, Capture& capture,
                       const std::vector<uint64_t>& acquisitions_before) {
  const proto::Header& h = region.header();
  const uint32_t count = std::min<uint32_t>(region.gil_count(), proto::kMaxGils);
  const auto states = pyruntime::gil_states(target.pid, procfs::task_ids(target.pid), snap);
  for (uint32_t i = 0; i < count && i < acquisitions_before.size(); ++i) {
    const proto::GilSlot& s = h.gils[i];
    if (!s.valid.load(std::memory_order_acquire)) continue;
    const uint64_t initial_holder = s.initial_holder;
    for (size_t k = 0; k < snap.gils.size(); ++k) {
      const pyruntime::PyGil& g = snap.gils[k];
      if (g.address.value() != s.address) continue;
      if (acquisitions_before[i] == 0 && acquisitions(region, i) == 0 && g.locked == 1 &&
          initial_holder != 0 && g.last_holder.value() == initial_holder) {
        for (const pyruntime::PyThread& t : snap.threads)
          if (t.tstate.value() == initial_holder && t.tid > 0)
            if (const pid_t tid = probe_tid(target.pid, t.tid))
              capture.set_state_at_arm(i, static_cast<uint32_t>(tid), report::kArmHolds);
      }
      for (const pyruntime::ThreadGilState& st : states)
        if (st.role == pyruntime::GilRole::kWaits && st.gil == k && st.tid > 0)
          if (const pid_t tid = probe_tid(target.pid, st.tid))
            capture.set_state_at_arm(i, static_cast<uint32_t>(tid), report::kArmWaits);
    }
  }
}

}  // namespace

void name_threads_from_outside(const attach::PreflightResult& target, Capture& capture) {
  try {
    const proto::ShmRegion& region = capture.region();
    // Read before the snapshot: see note_state_at_arm.
    std::vector<uint64_t> before;
    if (!region.corrupt()) {
      const uint32_t count = std::min<uint32_t>(region.gil_count(), proto::kMaxGils);
      for (uint32_t i = 0; i < count; ++i) before.push_back(acquisitions(region, i));
    }
    attach::LiveRemoteMemory memory(target.pid);
    const pyruntime::PySnapshot snap =
        pyruntime::read_runtime(memory, target.pid, target.py_runtime, target.version_hex);
    capture.add_outside_names(pyruntime::thread_names(snap));
    note_state_at_arm(target, region, snap, capture, before);
  } catch (const proto::RegionCorrupt&) {
    // The capture's next poll says so.
  } catch (const Error& e) {
    std::cerr << fmt::format("gilstat: note: thread names from outside not read: {}\n", e.what());
  }
}

}  // namespace gilstat::cli

// The CLI's side of the shared region: create it (under `gilstat run`),
// take it over from an attached target, drain the per-thread rings, read the
// thread-name log.  Everything in the region is written by the target too,
// so it is untrusted input (docs/region.md): the layout is validated once,
// at open, into a private copy through which rings and names are addressed;
// every value read afterwards is bounded before it is used as an index, a
// size or a loop count, and one that cannot be right ends the session with
// RegionCorrupt.
#pragma once

#include <time.h>

#include <cstdint>
#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "gilstat/protocol.hpp"
#include "report/modules.hpp"

namespace gilstat::proto {

struct ThreadName {
  uint32_t tid;
  std::string name;
};

// A consistent copy of one thread's totals on one GIL (ThreadTotals).
struct TotalsSnapshot {
  uint32_t tid = 0;
  uint32_t flags = 0;  // RingFlags
  uint32_t gil = 0;
  TotalsState state = TotalsState::None;
  uint64_t first_ts = 0;
  uint64_t since = 0;
  uint64_t wait = 0;
  uint64_t held = 0;
  uint64_t released = 0;
  uint64_t acquisitions = 0;
  uint64_t forced_handoffs = 0;
};

// The region cannot be what the probe wrote: something in the target wrote
// over it (or handed gilstat something else).  One line, exit code 1.
// `in_session`: found while draining (what was read before is kept), not
// at open (nothing was read).
class RegionCorrupt : public Error {
 public:
  explicit RegionCorrupt(const std::string& what, bool in_session = false);
};

// The layout as validated at open: a private copy, never re-read.
struct RegionLayout {
  Layout layout;  // counts, offsets, total size
  uint64_t ring_stride = 0;
  ClockKind clock = ClockKind::Monotonic;
};

// The header's layout fields (magic ... clock_kind): the bytes a reader
// decodes once and then only compares.
inline constexpr size_t kLayoutBytes = offsetof(Header, clock_kind) + sizeof(ClockKind);

// Decodes the layout fields from `header` (a private copy of at least
// kLayoutBytes) with the recording reader's cursor and validates them for a
// region of `size` bytes.  Throws RegionCorrupt, or Error for a probe of
// another protocol version.
RegionLayout parse_region_layout(std::string_view header, uint64_t size);

class ShmRegion {
 public:
  // Creates an anonymous memfd region (mode 0600), laid out, initialised
  // and sealed at its size.  Throws gilstat::Error on failure.
  static ShmRegion create(const Layout& layout, ClockKind clock);
  // Takes the region the probe created inside an attached target: its fd
  // `target_fd` there, duplicated with pidfd_getfd (never by opening
  // /proc/PID/fd/N), mapped only once it proved to be a memfd sealed as
  // gilstat seals it, so its size cannot change under us (no SIGBUS).
  // Throws RegionCorrupt for anything else, Error when it cannot be taken.
  static ShmRegion open_in_process(int pid, int target_fd);
  // The region of the process that started gilstat and handed it `fd`
  // (the Python package's reader): duplicated, then checked and mapped as
  // open_in_process does.
  static ShmRegion open_inherited(int fd);
  // A region already in memory that this object does not own (tests,
  // fuzzing).  Validated as open_in_process validates.
  static ShmRegion over_memory(void* base, size_t size);
  ShmRegion(ShmRegion&&) noexcept;
  ShmRegion& operator=(ShmRegion&&) = delete;
  ~ShmRegion();

  int fd() const { return fd_; }
  // For values only (status, counters, heartbeat): never for an offset,
  // a size or a count; those come from layout().
  Header& header() { return *header_; }
  const Header& header() const { return *header_; }
  const RegionLayout& layout() const { return layout_; }
  ClockKind clock() const { return layout_.clock; }

  using EventFn = std::function<void(uint32_t tid, uint32_t flags, const Event&)>;
  using DropsFn = std::function<void(uint32_t tid, uint64_t dropped)>;
  using TotalsFn = std::function<void(const TotalsSnapshot&)>;
  // Hands every event taken so far and every pending one to on_event, in
  // each ring's order; reports new ring-full drops per thread; frees rings
  // whose thread has exited, after handing their final totals to
  // on_final_totals.  A ShortWaitAcquire is handed over as the WaitBegin and
  // Acquire it stands for, never as itself.  Returns the number of events
  // handed over.  Throws RegionCorrupt (and every later call throws it
  // again) once the region cannot be right, after handing over what was
  // taken before.  One thread calls drain(); take() may run on another.
  uint64_t drain(const EventFn& on_event, const DropsFn& on_drops,
                 const TotalsFn& on_final_totals = {});
  // Copies every ring's new events out of the region now, freeing their
  // slots, for the next drain() to hand over: a thread that only does this
  // (RingTaker) keeps the rings empty however long the drain()ing thread
  // takes over the events.  Past kMaxStagedEvents waiting to be handed over
  // it leaves them in the rings (which drop when full, and count it).
  // Returns what the fullest ring held (its records), for pacing: max_fill()
  // may meanwhile be another take's.  Throws RegionCorrupt as drain() does.
  uint64_t take();
  static constexpr size_t kMaxStagedEvents = size_t{1} << 20;  // 24 MiB
  // Events taken and not yet handed over.
  uint64_t staged_events() const;
  // The totals of the threads still running, as they are now.  False when
  // some could not be read consistently (a writer that never finished its
  // change: the target's doing), which leaves the totals incomplete.
  // Throws RegionCorrupt as drain() does.
  bool live_totals(const TotalsFn& on_totals);
  // The fullest ring at the last take (drain()'s own or take()'s), in ring
  // records (a consumer polls sooner when it is high).
  uint64_t max_fill() const { return max_fill_.load(std::memory_order_relaxed); }
  // A ring freed by drain() whose final totals could not be read.
  bool totals_incomplete() const { return totals_incomplete_; }

  // Attach sessions: tells the probe this CLI is alive (it unhooks itself
  // when the heartbeat stops for a second).
  void beat() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    header_->heartbeat_ns.store(
        static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec),
        std::memory_order_relaxed);
    header_->heartbeat.fetch_add(1, std::memory_order_release);
  }

  // The name log's entries written since the last call, in log order
  // (seqlock readers).  Entries overwritten before they were read are
  // counted in names_lost().  Throws RegionCorrupt as drain() does.
  std::vector<ThreadName> new_names();
  uint64_t names_lost() const { return names_lost_; }
  // The last new_names() stopped at an entry still being written: later
  // entries (maybe the name of a thread that has just ended) are unread.
  bool names_pending() const { return names_pending_; }

  // Header::gil_count, bounded by kMaxGils.  Throws RegionCorrupt.
  uint32_t gil_count() const;
  // The probe's module table as it is now: module_count bounded by
  // kMaxModules, every state known, names strnlen-bounded; counters are
  // values.  Throws RegionCorrupt.
  std::vector<report::ModuleCounts> modules() const;
  uint64_t modules_not_hooked() const { return header_->modules_not_hooked.load(); }
  // True once drain(), new_names() or gil_count() found the region corrupt.
  bool corrupt() const {
    std::lock_guard lock(mu_);
    return !corrupt_.empty();
  }
  // What was found wrong (for RegionCorrupt's message); empty while usable.
  std::string corruption() const {
    std::lock_guard lock(mu_);
    return corrupt_;
  }

 private:
  ShmRegion(int fd, void* base, size_t size, bool owned);
  // Checks and maps `fd` (owned; closed on failure); `target_fd` names it in errors.
  static ShmRegion map_taken(int fd, int target_fd);
  void adopt();  // validates the layout and takes the private copies
  RingControl* ring(uint32_t i) const;
  // Ring i's state when a thread owns it (Active, or Closed: exited, not yet
  // freed), else Free (also for Claiming); RegionCorrupt for an unknown one.
  uint32_t owned_state(uint32_t i) const;
  void check_usable() const;  // throws when corrupt, or the layout fields moved
  // Rings [0, n) are the ones ever claimed (Header::rings_claimed): at most
  // ring_count and never less than before, else RegionCorrupt.
  uint32_t claimed_rings();
  // Ring i's totals of this session, each GIL with something in it; false
  // when a seqlock never settled.
  bool read_totals(uint32_t i, RingControl* r, const TotalsFn& fn);
  void take_locked();  // take()'s work; the caller holds mu_
  // Gives back the pages of ring i's slots for positions [from, to) that it
  // holds whole (its thread does not write there meanwhile).
  void release_pages(uint32_t i, uint64_t from, uint64_t to);
  void release_drained_pages(uint32_t i, uint64_t now_ns);
  [[noreturn]] void fail(const std::string& what) const;

  int fd_ = -1;
  void* base_ = nullptr;
  size_t size_ = 0;
  bool owned_ = true;  // unmap (and close) on destruction
  Header* header_ = nullptr;
  RegionLayout layout_;
  std::string layout_bytes_;            // the header's layout fields at open
  std::vector<uint64_t> tails_;         // per ring: our read position
  std::vector<uint64_t> seen_dropped_;  // per ring: drops already reported
  std::vector<uint64_t> released_to_;   // per ring: position up to which pages went back
  std::vector<std::pair<uint64_t, uint64_t>> release_check_;  // per ring: last check (ns, tail)
  std::vector<Event> scratch_;          // one ring's events as they are copied out
  // One ring's events from one take, and what else that take saw of it.
  struct Staged {
    uint32_t tid = 0;
    uint32_t flags = 0;
    uint64_t begin = 0;  // in staged_events_
    uint64_t count = 0;
    uint64_t dropped = 0;  // new ring-full drops
    bool closed = false;   // its thread had exited: the ring was freed
    bool totals_ok = true;
    uint64_t totals_begin = 0;  // its final totals, in staged_totals_
    uint64_t totals_count = 0;
  };
  std::vector<Staged> staged_;  // taken, not yet handed over (under mu_)
  std::vector<Event> staged_events_;
  std::vector<TotalsSnapshot> staged_totals_;
  std::vector<Staged> handing_;  // being handed over by drain() (its thread only)
  std::vector<Event> handing_events_;
  std::vector<TotalsSnapshot> handing_totals_;
  // Every reader and writer of the rings, the name log and corrupt_ holds
  // it: take() may run on a thread of its own.
  mutable std::recursive_mutex mu_;
  uint64_t name_next_ = 0;              // next name-log index to read
  uint64_t names_lost_ = 0;
  bool names_pending_ = false;
  uint32_t session_ = 0;  // Header::session at open: totals of others are stale
  std::atomic<uint64_t> max_fill_{0};
  uint32_t claimed_ = 0;  // Header::rings_claimed as last read
  bool totals_incomplete_ = false;
  mutable std::string corrupt_;  // what was found wrong; empty while usable
};

}  // namespace gilstat::proto

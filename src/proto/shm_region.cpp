#include "proto/shm_region.hpp"

#include <fcntl.h>
#include <fmt/core.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <utility>

#include "gilstat/ring.hpp"
#include "common/clock.hpp"
#include "proto/codec.hpp"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

namespace gilstat::proto {

// The region is in the byte order of the machine both sides run on; the
// cursor decodes little-endian.
static_assert(std::endian::native == std::endian::little);
// The layout fields are decoded in declaration order: no padding between them.
static_assert(offsetof(Header, names_offset) == 32 && offsetof(Header, clock_kind) == 56);

RegionCorrupt::RegionCorrupt(const std::string& what, bool in_session)
    : Error("the target's shared region is corrupt: " + what,
            in_session ? "something in the target process wrote over gilstat's shared memory; "
                         "the measurement ends here (what was recorded before is kept)"
                       : "something in the target process damaged or replaced gilstat's shared "
                         "memory before gilstat read it; nothing was recorded") {}

RegionLayout parse_region_layout(std::string_view header, uint64_t size) {
  if (size < sizeof(Header)) throw RegionCorrupt("it is smaller than its header");
  ByteCursor c(header.substr(0, kLayoutBytes));
  const uint64_t magic = c.le64();
  const uint32_t version = c.le32();
  const uint32_t header_size = c.le32();
  RegionLayout r;
  Layout& l = r.layout;
  l.ring_count = c.le32();
  l.ring_capacity = c.le32();
  l.name_slots = c.le32();
  r.ring_stride = c.le32();
  l.names_offset = c.le64();
  l.rings_offset = c.le64();
  l.total_size = c.le64();
  const uint32_t clock = c.le32();
  if (!c.ok()) throw RegionCorrupt("its header is cut short");
  if (magic != kMagic) throw RegionCorrupt("it does not start with gilstat's magic number");
  if (version != kProtocolVersion)
    throw Error(fmt::format("the probe in the target speaks protocol version {}, this gilstat {}",
                            version, kProtocolVersion),
                "the target runs a probe from a different gilstat version");
  if (header_size != sizeof(Header)) throw RegionCorrupt("its header size is wrong");
  if (clock != static_cast<uint32_t>(ClockKind::Monotonic) &&
      clock != static_cast<uint32_t>(ClockKind::Tsc))
    throw RegionCorrupt(fmt::format("its clock kind {} is unknown", clock));
  r.clock = static_cast<ClockKind>(clock);
  if (const char* problem = layout_problem(l, r.ring_stride, size)) throw RegionCorrupt(problem);
  return r;
}

ShmRegion ShmRegion::create(const Layout& layout, ClockKind clock) {
  // MFD_CLOEXEC: `run` clears it in the child only, right before exec.
  const int fd = memfd_create("gilstat", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) throw Error(fmt::format("memfd_create failed: {}", std::strerror(errno)));
  // memfd is born 0777: nobody but us (and the target we hand it to) may read
  // the GIL traffic of the process.  Sealed at its size: the program cannot
  // truncate it under our mapping.
  if (fchmod(fd, 0600) != 0 || ftruncate(fd, static_cast<off_t>(layout.total_size)) != 0 ||
      fcntl(fd, F_ADD_SEALS, kRegionSeals) != 0) {
    const int err = errno;
    close(fd);
    throw Error(fmt::format("cannot size the shared region: {}", std::strerror(err)));
  }
  void* base = mmap(nullptr, layout.total_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    const int err = errno;
    close(fd);
    throw Error(fmt::format("cannot map the shared region: {}", std::strerror(err)));
  }
  init_header(base, layout, clock);
  // The rest of the region is zero (fresh memfd pages): every ring Free,
  // every name slot empty.
  ShmRegion region(fd, base, layout.total_size, true);
  region.adopt();
  return region;
}

namespace {

// The target's fd `target_fd`, duplicated into this process.
int take_fd(int pid, int target_fd) {
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0 && errno == ESRCH)
    throw Error(fmt::format("process {} exited", pid), "the target exited during the attach");
  const int fd = pidfd < 0 ? -1 : static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, target_fd, 0));
  const int err = errno;
  if (pidfd >= 0) close(pidfd);
  if (fd >= 0) return fd;
  if (err == ENOSYS)
    throw Error(
        "this kernel cannot hand over the probe's shared region (pidfd_getfd needs "
        "Linux 5.6 or later)",
        "attaching to a running process needs Linux 5.6+; `gilstat run` works without it");
  if (err == EPERM || err == EACCES)
    throw Error(fmt::format("not allowed to take the probe's region from process {}", pid),
                "gilstat needs the same ptrace permission as for the attach", kExitPermission);
  if (err == EBADF)
    throw RegionCorrupt(fmt::format("its fd {} was closed by the target", target_fd));
  throw Error(
      fmt::format("cannot take the probe's region from process {}: {}", pid, std::strerror(err)));
}

const char* file_kind(mode_t mode) {
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISDIR(mode)) return "a directory";
  return "not a regular file";
}

// Proves `fd` is a memfd sealed as gilstat seals it (the seals are the
// proof; the memfd's name is anyone's to choose) and returns its size.
uint64_t check_sealed_memfd(int fd, int target_fd) {
  struct stat st;
  if (fstat(fd, &st) != 0)
    throw RegionCorrupt(fmt::format("its fd {} cannot be examined", target_fd));
  if (!S_ISREG(st.st_mode))
    throw RegionCorrupt(
        fmt::format("its fd {} is {}, not a memfd", target_fd, file_kind(st.st_mode)));
  struct statfs fs;
  if (fstatfs(fd, &fs) != 0 || fs.f_type != TMPFS_MAGIC)
    throw RegionCorrupt(fmt::format("its fd {} is a file, not a memfd", target_fd));
  const int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0)
    throw RegionCorrupt(
        fmt::format("its fd {} is a file that cannot be sealed, not a memfd", target_fd));
  if (seals != kRegionSeals)
    throw RegionCorrupt(
        fmt::format("its fd {} is not sealed at its size (seals {:#x}, expected {:#x})", target_fd,
                    seals, kRegionSeals));
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < sizeof(Header)) throw RegionCorrupt("it is smaller than its header");
  if (size > kMaxRegionBytes)
    throw RegionCorrupt(fmt::format("it is {} MiB, more than gilstat's limit of {} MiB", size >> 20,
                                    kMaxRegionBytes >> 20));
  return size;
}

}  // namespace

ShmRegion ShmRegion::open_in_process(int pid, int target_fd) {
  return map_taken(take_fd(pid, target_fd), target_fd);
}

ShmRegion ShmRegion::open_inherited(int fd) {
  const int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (own < 0)
    throw Error(fmt::format("cannot use fd {} as the probe's region: {}", fd, std::strerror(errno)),
                "it must be the fd gilstat_probe_start returned, inherited by gilstat");
  return map_taken(own, fd);
}

ShmRegion ShmRegion::map_taken(int fd, int target_fd) {
  uint64_t size = 0;
  try {
    size = check_sealed_memfd(fd, target_fd);
  } catch (...) {
    close(fd);
    throw;
  }
  void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    const int err = errno;
    close(fd);
    throw Error(fmt::format("cannot map the probe's region: {}", std::strerror(err)));
  }
  ShmRegion region(fd, base, size, true);
  region.adopt();
  return region;
}

ShmRegion ShmRegion::over_memory(void* base, size_t size) {
  ShmRegion region(-1, base, size, false);
  region.adopt();
  return region;
}

ShmRegion::ShmRegion(int fd, void* base, size_t size, bool owned)
    : fd_(fd), base_(base), size_(size), owned_(owned), header_(static_cast<Header*>(base)) {}

void ShmRegion::adopt() {
  // A private copy: decoded and validated once, then only compared.
  if (size_ >= kLayoutBytes) layout_bytes_.assign(static_cast<const char*>(base_), kLayoutBytes);
  layout_ = parse_region_layout(layout_bytes_, size_);
  const uint32_t count = layout_.layout.ring_count;
  tails_.resize(count);
  for (uint32_t i = 0; i < count; ++i) tails_[i] = ring(i)->tail.load(std::memory_order_acquire);
  seen_dropped_.assign(count, 0);
  released_to_.assign(tails_.begin(), tails_.end());
  release_check_.assign(count, {0, 0});
  // A region reused from an earlier attach: its older names may belong to
  // threads whose tids have been reused since.
  name_next_ = header_->name_start.load(std::memory_order_acquire);
  session_ = header_->session.load(std::memory_order_acquire);
}

ShmRegion::ShmRegion(ShmRegion&& o) noexcept
    : fd_(o.fd_),
      base_(o.base_),
      size_(o.size_),
      owned_(o.owned_),
      header_(o.header_),
      layout_(o.layout_),
      layout_bytes_(std::move(o.layout_bytes_)),
      tails_(std::move(o.tails_)),
      seen_dropped_(std::move(o.seen_dropped_)),
      released_to_(std::move(o.released_to_)),
      release_check_(std::move(o.release_check_)),
      name_next_(o.name_next_),
      names_lost_(o.names_lost_),
      names_pending_(o.names_pending_),
      session_(o.session_),
      max_fill_(o.max_fill_.load()),
      claimed_(o.claimed_),
      totals_incomplete_(o.totals_incomplete_),
      corrupt_(std::move(o.corrupt_)) {
  o.fd_ = -1;
  o.base_ = nullptr;
  o.header_ = nullptr;
}

ShmRegion::~ShmRegion() {
  if (base_ && owned_) munmap(base_, size_);
  if (fd_ >= 0) close(fd_);
}

void ShmRegion::fail(const std::string& what) const {
  corrupt_ = what;
  throw RegionCorrupt(what, true);
}

void ShmRegion::check_usable() const {
  if (!corrupt_.empty()) throw RegionCorrupt(corrupt_, true);
  // Nothing reads these fields again, but a target that changed them is
  // writing where it must not.
  if (std::memcmp(base_, layout_bytes_.data(), kLayoutBytes) != 0)
    fail("its header was overwritten");
}

RingControl* ShmRegion::ring(uint32_t i) const {
  // i < ring_count: inside the mapping (layout_problem checked the sum).
  return reinterpret_cast<RingControl*>(static_cast<char*>(base_) + layout_.layout.rings_offset +
                                        layout_.ring_stride * i);
}

uint32_t ShmRegion::gil_count() const {
  std::lock_guard lock(mu_);
  check_usable();
  const uint32_t n = header_->gil_count.load(std::memory_order_acquire);
  if (n > kMaxGils) fail(fmt::format("its GIL count {} is above {}", n, kMaxGils));
  return n;
}

std::vector<report::ModuleCounts> ShmRegion::modules() const {
  std::lock_guard lock(mu_);
  check_usable();
  const uint32_t n = header_->module_count.load(std::memory_order_acquire);
  if (n > kMaxModules) fail(fmt::format("its module count {} is above {}", n, kMaxModules));
  std::vector<report::ModuleCounts> out;
  out.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    const ModuleSlot& s = header_->modules[i];
    const uint32_t state = s.state.load(std::memory_order_acquire);
    // Free: being filled in right now (or cleared by a new session).
    if (state == static_cast<uint32_t>(ModuleState::Free)) continue;
    if (state > static_cast<uint32_t>(ModuleState::Restored))
      fail(fmt::format("module slot {} has the unknown state {}", i, state));
    report::ModuleCounts c;
    c.path.assign(s.name, strnlen(s.name, sizeof(s.name)));
    c.state = state;
    const std::pair<uint64_t*, const std::atomic<uint64_t>*> fields[] = {
        {&c.releases, &s.releases},         {&c.released, &s.released},
        {&c.restores, &s.restores},         {&c.restore_wait, &s.restore_wait},
        {&c.ensures, &s.ensures},           {&c.ensure_wait, &s.ensure_wait},
        {&c.gil_releases, &s.gil_releases}, {&c.callback_held, &s.callback_held}};
    for (const auto& [to, from] : fields) *to = from->load(std::memory_order_relaxed);
    out.push_back(std::move(c));
  }
  return out;
}

bool ShmRegion::read_totals(uint32_t i, RingControl* r, const TotalsFn& fn) {
  if (r->totals_session.load(std::memory_order_acquire) != session_) return true;
  bool complete = true;
  for (uint32_t gil = 0; gil < kMaxGils; ++gil) {
    const ThreadTotals& t = r->totals[gil];
    TotalsSnapshot s;
    bool settled = false;
    // The writer's change takes a few stores; a seqlock that stays odd or
    // keeps moving for this many tries is not a writer we can wait for.
    for (int tries = 0; tries < 64 && !settled; ++tries) {
      const uint32_t s1 = t.seq.load(std::memory_order_acquire);
      const uint32_t state = t.state.load(std::memory_order_relaxed);
      s.first_ts = t.first_ts.load(std::memory_order_relaxed);
      s.since = t.since.load(std::memory_order_relaxed);
      s.wait = t.wait.load(std::memory_order_relaxed);
      s.held = t.held.load(std::memory_order_relaxed);
      s.released = t.released.load(std::memory_order_relaxed);
      s.acquisitions = t.acquisitions.load(std::memory_order_relaxed);
      s.forced_handoffs = t.forced_handoffs.load(std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_acquire);
      if ((s1 & 1) || t.seq.load(std::memory_order_relaxed) != s1) continue;
      if (state > static_cast<uint32_t>(TotalsState::Released))
        fail(fmt::format("ring {} has totals in the unknown state {}", i, state));
      s.state = static_cast<TotalsState>(state);
      settled = true;
    }
    if (!settled) {
      complete = false;
      continue;
    }
    if (s.state == TotalsState::None && s.acquisitions == 0 && s.forced_handoffs == 0) continue;
    s.tid = r->tid;
    s.flags = r->flags;
    s.gil = gil;
    fn(s);
  }
  return complete;
}

uint32_t ShmRegion::claimed_rings() {
  const uint32_t n = header_->rings_claimed.load(std::memory_order_acquire);
  if (n > layout_.layout.ring_count)
    fail(fmt::format("its claimed-ring count {} is above its {} rings", n,
                     layout_.layout.ring_count));
  if (n < claimed_) fail("its claimed-ring count went backwards");
  claimed_ = n;
  return n;
}

uint32_t ShmRegion::owned_state(uint32_t i) const {
  const uint32_t state = ring(i)->state.load(std::memory_order_acquire);
  if (state > static_cast<uint32_t>(RingState::Claiming))
    fail(fmt::format("ring {} has the unknown state {}", i, state));
  return state == static_cast<uint32_t>(RingState::Active) ||
                 state == static_cast<uint32_t>(RingState::Closed)
             ? state
             : static_cast<uint32_t>(RingState::Free);
}

bool ShmRegion::live_totals(const TotalsFn& on_totals) {
  std::lock_guard lock(mu_);
  check_usable();
  bool complete = true;
  const uint32_t rings = claimed_rings();
  for (uint32_t i = 0; i < rings; ++i) {
    // Closed rings are still live here: drain() hands over their final
    // totals when it frees them.
    if (owned_state(i) == static_cast<uint32_t>(RingState::Free)) continue;
    complete &= read_totals(i, ring(i), on_totals);
  }
  return complete;
}

// Copies every ring's new events out and frees their slots (ring_take),
// checking each event; a ring whose thread has exited is freed once its
// last events and final totals are copied.  Caller holds mu_.
void ShmRegion::take_locked() {
  check_usable();
  const uint32_t capacity = layout_.layout.ring_capacity;
  uint64_t fullest = 0;
  // Only the rings ever claimed: an idle target costs a few cache lines per
  // take, not one per ring.
  const uint32_t rings = claimed_rings();
  const uint64_t now_ns = monotonic_ns();
  for (uint32_t i = 0; i < rings; ++i) {
    RingControl* r = ring(i);
    const uint32_t state = owned_state(i);
    if (state == static_cast<uint32_t>(RingState::Free)) continue;
    if (r->tail.load(std::memory_order_relaxed) != tails_[i])
      fail(fmt::format("ring {}'s read position was moved by the target", i));
    // A consumer far behind leaves the events in the ring (which then drops
    // and counts them) rather than growing without bound.
    const bool closed = state == static_cast<uint32_t>(RingState::Closed);
    if (staged_events_.size() >= kMaxStagedEvents && !closed) continue;
    Staged st;
    st.tid = r->tid;
    st.flags = r->flags;
    st.begin = staged_events_.size();
    if (scratch_.size() < capacity) scratch_.resize(capacity);
    const uint64_t n = ring_take(r, capacity, tails_[i], scratch_.data());
    if (n == kRingCorrupt)
      fail(fmt::format("ring {}'s write position is more than its {} events ahead", i, capacity));
    for (uint64_t k = 0; k < n; ++k) {
      const Event& ev = scratch_[k];
      if (ev.kind < static_cast<uint8_t>(EventKind::WaitBegin) ||
          ev.kind > static_cast<uint8_t>(EventKind::ShortWaitAcquire))
        fail(fmt::format("ring {} holds an event of unknown kind {}", i, ev.kind));
      if (ev.gil >= kMaxGils) fail(fmt::format("ring {} holds an event of GIL {}", i, ev.gil));
      // A ShortWaitAcquire's wait reaching back before the clock's start
      // cannot be right.
      if (ev.kind == static_cast<uint8_t>(EventKind::ShortWaitAcquire) && (ev.value >> 48) > ev.ts)
        fail(fmt::format("ring {} holds a wait before the clock's start", i));
    }
    staged_events_.insert(staged_events_.end(), scratch_.begin(),
                          scratch_.begin() + static_cast<ptrdiff_t>(n));
    st.count = n;
    fullest = std::max(fullest, n);
    const uint64_t dropped = r->dropped.load(std::memory_order_relaxed);
    if (dropped < seen_dropped_[i]) fail(fmt::format("ring {}'s drop count went backwards", i));
    st.dropped = dropped - seen_dropped_[i];
    seen_dropped_[i] = dropped;
    if (closed) {
      // Its thread has exited and published Closed after its last event
      // (release/acquire), so the take above saw everything: free it.
      st.closed = true;
      st.totals_begin = staged_totals_.size();
      st.totals_ok = read_totals(i, r, [&](const TotalsSnapshot& t) { staged_totals_.push_back(t); });
      st.totals_count = staged_totals_.size() - st.totals_begin;
      // Nobody writes its slots until the ring is claimed again: all go back.
      release_pages(i, 0, capacity);
      released_to_[i] = tails_[i];
      r->state.store(static_cast<uint32_t>(RingState::Free), std::memory_order_release);
    }
    if (!closed) release_drained_pages(i, now_ns);
    if (st.count || st.dropped || st.closed) staged_.push_back(st);
  }
  max_fill_.store(fullest, std::memory_order_relaxed);
}

uint64_t ShmRegion::take() {
  std::lock_guard lock(mu_);
  take_locked();
  return max_fill_.load(std::memory_order_relaxed);
}

uint64_t ShmRegion::staged_events() const {
  std::lock_guard lock(mu_);
  return staged_events_.size();
}

uint64_t ShmRegion::drain(const EventFn& on_event, const DropsFn& on_drops,
                          const TotalsFn& on_final_totals) {
  {
    std::lock_guard lock(mu_);
    check_usable();
    try {
      take_locked();
    } catch (const RegionCorrupt&) {
      // What was taken before it is handed over first; thrown below.
    }
    // Empty already unless a callback threw during the last hand-over: what
    // it left is not handed over twice.
    handing_.clear();
    handing_events_.clear();
    handing_totals_.clear();
    std::swap(staged_, handing_);
    std::swap(staged_events_, handing_events_);
    std::swap(staged_totals_, handing_totals_);
  }
  uint64_t total = 0;
  for (const Staged& st : handing_) {
    for (uint64_t k = st.begin; k < st.begin + st.count; ++k) {
      const Event& ev = handing_events_[k];
      if (ev.kind == static_cast<uint8_t>(EventKind::ShortWaitAcquire)) {
        // Back into the two events it stands for (protocol.hpp).
        const uint64_t wait = ev.value >> 48;
        on_event(st.tid, st.flags,
                 Event{ev.ts - wait, 0, 0, static_cast<uint8_t>(EventKind::WaitBegin), ev.gil, 0});
        on_event(st.tid, st.flags,
                 Event{ev.ts, ev.value & kShortWaitHolderMask, ev.seq,
                       static_cast<uint8_t>(EventKind::Acquire), ev.gil, 0});
        total += 2;
        continue;
      }
      on_event(st.tid, st.flags, ev);
      ++total;
    }
    if (st.dropped) on_drops(st.tid, st.dropped);
    if (st.closed) {
      if (!st.totals_ok) totals_incomplete_ = true;
      if (on_final_totals)
        for (uint64_t k = st.totals_begin; k < st.totals_begin + st.totals_count; ++k)
          on_final_totals(handing_totals_[k]);
    }
  }
  handing_.clear();
  handing_events_.clear();
  handing_totals_.clear();
  std::lock_guard lock(mu_);
  if (!corrupt_.empty()) throw RegionCorrupt(corrupt_, true);
  return total;
}

std::vector<ThreadName> ShmRegion::new_names() {
  std::lock_guard lock(mu_);
  check_usable();
  std::vector<ThreadName> out;
  const uint32_t slots = layout_.layout.name_slots;
  const auto* log = reinterpret_cast<const NameSlot*>(static_cast<const char*>(base_) +
                                                      layout_.layout.names_offset);
  const uint64_t head = header_->name_head.load(std::memory_order_acquire);
  if (head < name_next_) fail("its thread-name log moved backwards");
  if (head - name_next_ > slots) {
    names_lost_ += head - name_next_ - slots;
    name_next_ = head - slots;
  }
  // At most `slots` entries: the loop is bounded whatever head says.
  for (; name_next_ < head; ++name_next_) {
    const NameSlot& slot = log[name_next_ & (slots - 1)];
    const uint64_t want = 2 * name_next_ + 2;
    const uint64_t s1 = slot.seq.load(std::memory_order_acquire);
    if (s1 > want) {  // already overwritten by a later entry
      ++names_lost_;
      continue;
    }
    if (s1 != want) {
      // Still being written: read it next time, unless the writers are so
      // far ahead that it can only be a stuck or lying slot.
      if (head - name_next_ < slots / 2) break;
      ++names_lost_;
      continue;
    }
    const uint32_t tid = slot.tid;
    char name[kNameLen];
    std::memcpy(name, slot.name, kNameLen);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (slot.seq.load(std::memory_order_relaxed) != s1) {
      ++names_lost_;
      continue;
    }
    if (tid != 0) out.push_back({tid, std::string(name, strnlen(name, kNameLen))});
  }
  names_pending_ = name_next_ < head;
  return out;
}

}  // namespace gilstat::proto

#include "proto/shm_region.hpp"

#include <fmt/core.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>

#include "common/error.hpp"
#include "gilstat/ring.hpp"

namespace gilstat::proto {

ShmRegion ShmRegion::create(const Layout& layout, ClockKind clock) {
  // MFD_CLOEXEC: `run` clears it in the child only, right before exec.
  const int fd = memfd_create("gilstat", MFD_CLOEXEC);
  if (fd < 0) throw Error(fmt::format("memfd_create failed: {}", std::strerror(errno)));
  // memfd is born 0777: nobody but us (and the target we hand it to) may read
  // the GIL traffic of the process.
  if (fchmod(fd, 0600) != 0 || ftruncate(fd, static_cast<off_t>(layout.total_size)) != 0) {
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
  return ShmRegion(fd, base, layout.total_size);
}

ShmRegion ShmRegion::open_in_process(int pid, int target_fd) {
  const std::string path = fmt::format("/proc/{}/fd/{}", pid, target_fd);
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0)
    throw Error(fmt::format("cannot open the probe's region {}: {}", path, std::strerror(errno)),
                "the target may have exited", errno == EACCES ? kExitPermission : kExitRuntime);
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size < static_cast<off_t>(sizeof(Header))) {
    close(fd);
    throw Error(fmt::format("{} is not a gilstat region (too small)", path));
  }
  const size_t size = static_cast<size_t>(st.st_size);
  void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    const int err = errno;
    close(fd);
    throw Error(fmt::format("cannot map {}: {}", path, std::strerror(err)));
  }
  const auto* h = static_cast<const Header*>(base);
  const uint64_t rings_end = h->rings_offset + uint64_t{h->ring_stride} * h->ring_count;
  const bool ok = h->magic == kMagic && h->version == kProtocolVersion &&
                  h->ring_count <= kMaxRings && h->ring_capacity &&
                  (h->ring_capacity & (h->ring_capacity - 1)) == 0 &&
                  h->ring_stride == ring_stride(h->ring_capacity) && rings_end <= size &&
                  h->names_offset + uint64_t{h->name_slots} * sizeof(NameSlot) <= size;
  if (!ok) {
    munmap(base, size);
    close(fd);
    throw Error(fmt::format("{} has an unknown layout", path),
                "the target runs a probe from a different gilstat version");
  }
  return ShmRegion(fd, base, size);
}

ShmRegion::ShmRegion(int fd, void* base, size_t size)
    : fd_(fd), base_(base), size_(size), header_(static_cast<Header*>(base)) {
  seen_dropped_.assign(header_->ring_count, 0);
  // A region reused from an earlier attach: its older names may belong to
  // threads whose tids have been reused since.
  name_next_ = header_->name_start.load(std::memory_order_acquire);
}

ShmRegion::ShmRegion(ShmRegion&& o) noexcept
    : fd_(o.fd_), base_(o.base_), size_(o.size_), header_(o.header_),
      seen_dropped_(std::move(o.seen_dropped_)), name_next_(o.name_next_),
      names_lost_(o.names_lost_) {
  o.fd_ = -1;
  o.base_ = nullptr;
  o.header_ = nullptr;
}

ShmRegion::~ShmRegion() {
  if (base_) munmap(base_, size_);
  if (fd_ >= 0) close(fd_);
}

RingControl* ShmRegion::ring(uint32_t i) const {
  return reinterpret_cast<RingControl*>(static_cast<char*>(base_) + header_->rings_offset +
                                        uint64_t{header_->ring_stride} * i);
}

uint64_t ShmRegion::drain(const EventFn& on_event, const DropsFn& on_drops) {
  // The sizes were written by us, but the target can scribble over the
  // header: re-validate against what we mapped before every use.
  const uint32_t count = header_->ring_count;
  const uint32_t capacity = header_->ring_capacity;
  if (count > seen_dropped_.size() || !capacity || (capacity & (capacity - 1)) ||
      header_->rings_offset + uint64_t{ring_stride(capacity)} * count > size_)
    throw Error("the shared region's header is corrupt", "the target process wrote over it");
  uint64_t total = 0;
  for (uint32_t i = 0; i < count; ++i) {
    RingControl* r = ring(i);
    const auto state = static_cast<RingState>(r->state.load(std::memory_order_acquire));
    if (state != RingState::Active && state != RingState::Closed) continue;
    const uint32_t tid = r->tid;
    const uint32_t flags = r->flags;
    total += ring_drain(r, capacity, [&](const Event& ev) { on_event(tid, flags, ev); });
    const uint64_t dropped = r->dropped.load(std::memory_order_relaxed);
    if (dropped > seen_dropped_[i]) {
      on_drops(tid, dropped - seen_dropped_[i]);
      seen_dropped_[i] = dropped;
    }
    if (state == RingState::Closed) {
      // Its thread has exited and published Closed after its last event
      // (release/acquire), so the drain above saw everything: free it.
      r->state.store(static_cast<uint32_t>(RingState::Free), std::memory_order_release);
    }
  }
  return total;
}

std::vector<ThreadName> ShmRegion::new_names() {
  std::vector<ThreadName> out;
  const uint32_t slots = header_->name_slots;
  if (!slots || (slots & (slots - 1)) ||
      header_->names_offset + uint64_t{slots} * sizeof(NameSlot) > size_)
    return out;
  const auto* log =
      reinterpret_cast<const NameSlot*>(static_cast<const char*>(base_) + header_->names_offset);
  const uint64_t head = header_->name_head.load(std::memory_order_acquire);
  if (head < name_next_) {  // only a target scribbling over the header does this
    name_next_ = head;
    return out;
  }
  if (head - name_next_ > slots) {
    names_lost_ += head - name_next_ - slots;
    name_next_ = head - slots;
  }
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
  return out;
}

}  // namespace gilstat::proto

// The CLI's side of the shared region: create it (under `gilstat run`),
// drain the per-thread rings, read the thread-name table.  Everything read
// from the region is untrusted and bounds-checked.
#pragma once

#include <time.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "gilstat/protocol.hpp"

namespace gilstat::proto {

struct ThreadName {
  uint32_t tid;
  std::string name;
};

class ShmRegion {
 public:
  // Creates an anonymous memfd region (mode 0600), laid out and initialised.
  // Throws gilstat::Error on failure.
  static ShmRegion create(const Layout& layout, ClockKind clock);
  // Maps a region the probe created inside an attached target, through
  // /proc/PID/fd/N (works across mount namespaces).  Validates the layout
  // against the file size; throws gilstat::Error when it does not fit.
  static ShmRegion open_in_process(int pid, int fd);
  ShmRegion(ShmRegion&&) noexcept;
  ShmRegion& operator=(ShmRegion&&) = delete;
  ~ShmRegion();

  int fd() const { return fd_; }
  Header& header() { return *header_; }
  const Header& header() const { return *header_; }

  using EventFn = std::function<void(uint32_t tid, uint32_t flags, const Event&)>;
  using DropsFn = std::function<void(uint32_t tid, uint64_t dropped)>;
  // Hands every pending event to on_event in each ring's order; reports new
  // ring-full drops per thread; frees rings whose thread has exited.
  // Returns the number of events drained.
  uint64_t drain(const EventFn& on_event, const DropsFn& on_drops);

  // Attach sessions: tells the probe this CLI is alive (it unhooks itself
  // when the heartbeat stops for a second).
  void beat() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    header_->heartbeat_ns.store(static_cast<uint64_t>(ts.tv_sec) * 1000000000ull +
                                    static_cast<uint64_t>(ts.tv_nsec),
                                std::memory_order_relaxed);
    header_->heartbeat.fetch_add(1, std::memory_order_release);
  }

  // The name log's entries written since the last call, in log order
  // (seqlock readers).  Entries overwritten before they were read are
  // counted in names_lost().
  std::vector<ThreadName> new_names();
  uint64_t names_lost() const { return names_lost_; }

 private:
  ShmRegion(int fd, void* base, size_t size);
  RingControl* ring(uint32_t i) const;

  int fd_ = -1;
  void* base_ = nullptr;
  size_t size_ = 0;
  Header* header_ = nullptr;
  std::vector<uint64_t> seen_dropped_;  // per ring: drops already reported
  uint64_t name_next_ = 0;              // next name-log index to read
  uint64_t names_lost_ = 0;
};

}  // namespace gilstat::proto

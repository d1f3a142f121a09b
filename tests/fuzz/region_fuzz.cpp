// libFuzzer target: the shared region as a hostile target leaves it, through
// the CLI's region reader (header, ring controls and their exact totals,
// events, name log, GIL slots and their counters) and on through the capture pipeline, the
// aggregator and both renderers.  The first byte picks the layer:
//   even: the layout check at open: the next two bytes give the region's
//         size, the rest is XORed over the start of a valid region's image
//         (its header);
//   odd:  a small valid region with one active ring, a few events and a
//         name is patched between polls, as a target writing into its own
//         region while gilstat drains it: the rest is a list of patches
//         (offset: 2 bytes, length: 1 byte, bytes), each followed by a poll.
// Whatever the bytes, the reader must end in RegionCorrupt or in a report;
// ASan/UBSan catch any read or write outside the region.
// Built and run by tests/fuzz/CMakeLists.txt; see tests/fuzz/README.md.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "common/error.hpp"
#include "gilstat/ring.hpp"
#include "proto/capture.hpp"
#include "proto/shm_region.hpp"
#include "render_all.hpp"

using namespace gilstat;

namespace {

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

// Four rings of eight events, eight name slots: a few KiB, so patches
// reach every part of it.
constexpr proto::Layout kLayout = proto::make_layout(4, 8, 8);

void seed_region(void* base) {
  proto::Header* h = proto::init_header(base, kLayout, proto::ClockKind::Monotonic);
  h->claim_pid.store(4242);
  h->rings_claimed.store(kLayout.ring_count);
  h->status.store(static_cast<uint32_t>(proto::Status::Armed));
  h->gil_count.store(1);
  h->gils[0].address = 0x1000;
  h->gils[0].arm_ts = 100;
  h->gils[0].interp_ids[0] = 0;
  for (int i = 1; i < 4; ++i) h->gils[0].interp_ids[i] = -1;
  h->gils[0].valid.store(1);
  auto* ring =
      reinterpret_cast<proto::RingControl*>(static_cast<char*>(base) + kLayout.rings_offset);
  ring->tid = 4242;
  ring->state.store(static_cast<uint32_t>(proto::RingState::Active));
  const proto::EventKind kinds[] = {proto::EventKind::WaitBegin, proto::EventKind::Acquire,
                                    proto::EventKind::Release};
  for (uint32_t i = 0; i < 3; ++i) {
    proto::ring_push(ring, kLayout.ring_capacity,
                     {200 + i, 0x77, i == 0 ? 0u : i, static_cast<uint8_t>(kinds[i]), 0, 0});
    proto::totals_add(ring->totals[0], kinds[i], 200 + i);  // and its exact totals
  }
  h->gils[0].acquisitions.store(1);
  auto* names = reinterpret_cast<proto::NameSlot*>(static_cast<char*>(base) + kLayout.names_offset);
  names[0].tid = 4242;
  std::memcpy(names[0].name, "MainThread", 10);
  names[0].seq.store(2);
  h->name_head.store(1);
  // Two objects in the module table: one hooked with calls, one unloaded.
  std::memcpy(h->modules[0].name, "/x/_demo.so", 11);
  h->modules[0].releases.store(3);
  h->modules[0].released.store(30);
  h->modules[0].ensures.store(2);
  h->modules[0].state.store(static_cast<uint32_t>(proto::ModuleState::Hooked));
  std::memcpy(h->modules[1].name, "/x/closed.so", 12);
  h->modules[1].state.store(static_cast<uint32_t>(proto::ModuleState::Unloaded));
  h->module_count.store(2);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool patch_mode = data[0] % 2 == 1;
  ++data;
  --size;
  size_t region_size = kLayout.total_size;
  if (!patch_mode) {
    if (size < 2) return 0;
    region_size = (data[0] | size_t{data[1]} << 8) % (2 * kLayout.total_size);
    data += 2;
    size -= 2;
  }
  const size_t alloc_size = std::max(region_size, size_t{kLayout.total_size});
  std::unique_ptr<void, FreeDeleter> mem(
      std::aligned_alloc(4096, (alloc_size + 4095) / 4096 * 4096));
  std::memset(mem.get(), 0, alloc_size);
  seed_region(mem.get());
  if (!patch_mode) {  // XORed: zero bytes leave the valid header as it is
    auto* bytes = static_cast<uint8_t*>(mem.get());
    for (size_t i = 0; i < std::min(size, region_size); ++i) bytes[i] ^= data[i];
  }
  std::unique_ptr<proto::ShmRegion> region;
  try {
    region =
        std::make_unique<proto::ShmRegion>(proto::ShmRegion::over_memory(mem.get(), region_size));
  } catch (const Error&) {
    return 0;  // refused at open, as documented
  }
  proto::Capture capture(*region, nullptr);
  auto poll = [&] {
    try {
      capture.poll();
      return true;
    } catch (const proto::RegionCorrupt&) {
      return false;
    }
  };
  bool alive = poll();
  if (patch_mode) {
    auto* bytes = static_cast<uint8_t*>(mem.get());
    size_t at = 0;
    while (alive && at + 3 <= size) {
      const size_t offset = (data[at] | size_t{data[at + 1]} << 8) % region_size;
      const size_t len = std::min<size_t>({data[at + 2], size - at - 3, region_size - offset});
      std::memcpy(bytes + offset, data + at + 3, len);
      at += 3 + len;
      alive = poll();
    }
  }
  const report::Report r = capture.finish(1'000'000, 1.0, "fuzz");
  // Once found corrupt, the region is never read again.
  if (region->corrupt() && poll()) std::abort();
  fuzz::render_all(r);
  return 0;
}

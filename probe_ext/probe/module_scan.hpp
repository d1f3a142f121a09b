// The count of objects left out of a full module table, kept by each scan of
// the loaded objects.  Every scan walks every object again, and finds again
// each one it could not hook before: the count is the number left out *now*
// (set by the scan, not added to), so an object is never counted twice
// however many scans see it.  Header-only, no allocation: the probe's scan
// and the unit tests use it.
#pragma once

#include <cstdint>

namespace gilstat::probe {

class ModuleScanCount {
 public:
  // A scan begins.
  void begin() { found_ = hooked_ = 0; }
  // The walk found an object that imports the C API and is not in the table.
  void found_new() { ++found_; }
  // One of those was hooked by this scan.
  void hooked() { ++hooked_; }
  // After the scan, with `used` of `capacity` table entries in use: the
  // objects left out because the table is full (an object not hooked while
  // there was room is taken by the next scan, or was unloaded meanwhile).
  uint32_t left_out(uint32_t used, uint32_t capacity) const {
    return used >= capacity && found_ > hooked_ ? found_ - hooked_ : 0;
  }
  // Whether another scan is worth making at the next check although no
  // object was loaded: there were more new objects than one pass takes and
  // the table still has room for them.
  bool rescan(bool more_than_one_pass, uint32_t used, uint32_t capacity) const {
    return more_than_one_pass && used < capacity;
  }

 private:
  uint32_t found_ = 0;
  uint32_t hooked_ = 0;
};

}  // namespace gilstat::probe

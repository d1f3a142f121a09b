// HDR-style log histogram of uint64 values (durations in raw clock units or ns).
//
// Values below kSubBuckets are counted exactly.  Above, every power of two
// [2^e, 2^(e+1)) is split into kSubBuckets/2 equal buckets, so a bucket is at
// most 2^e * 2/kSubBuckets wide.  percentile() answers with the middle of the
// bucket, hence a relative error of at most 1/kSubBuckets (1.6 %).  Memory is
// bounded whatever the number of values: up to kSparseMax buckets are kept as
// (index, count) pairs, beyond that all kBucketCount counters (~15 KiB).  A
// service starts thousands of threads that take the GIL a few times each, so
// most histograms stay small.  Count, total, min and max are kept exactly
// beside the buckets.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace gilstat::report {

class Histogram {
 public:
  static constexpr unsigned kSubBucketBits = 6;
  static constexpr uint64_t kSubBuckets = uint64_t{1} << kSubBucketBits;  // 64
  static constexpr size_t kBucketCount = kSubBuckets + (64 - kSubBucketBits) * (kSubBuckets / 2);

  // One bucket: the values lo..hi (both inclusive) and how many fell in it.
  struct Bucket {
    uint64_t lo;
    uint64_t hi;
    uint64_t count;
  };

  // Bucket geometry, the same for every histogram.  (Inline: the
  // aggregator calls add() a few times per event.)
  static size_t bucket_index(uint64_t value) {
    if (value < kSubBuckets) return value;
    const unsigned e = 63 - std::countl_zero(value);  // >= kSubBucketBits
    const unsigned shift = e - kSubBucketBits + 1;
    const uint64_t sub = (value >> shift) - kSubBuckets / 2;  // in [0, kSubBuckets / 2)
    return kSubBuckets + (e - kSubBucketBits) * (kSubBuckets / 2) + sub;
  }
  static uint64_t bucket_lo(size_t index);
  static uint64_t bucket_hi(size_t index);

  void add(uint64_t value, uint64_t n = 1) {
    if (n == 0) return;
    add_to_bucket(bucket_index(value), n);
    count_ += n;
    total_ += static_cast<unsigned __int128>(value) * n;
    min_ = std::min(min_, value);
    max_ = std::max(max_, value);
  }
  void merge(const Histogram& other);

  uint64_t count() const { return count_; }
  unsigned __int128 total() const { return total_; }
  uint64_t min() const { return count_ ? min_ : 0; }
  uint64_t max() const { return max_; }

  // Nearest rank: the smallest recorded value v such that at least
  // ceil(q * count) values are <= v, up to the bucket error, clipped to
  // [min, max].  q outside [0, 1] is clamped; an empty histogram gives 0.
  uint64_t percentile(double q) const;

  uint64_t count_at(size_t index) const;
  // The non-empty buckets in increasing order (for drawing).
  std::vector<Bucket> buckets() const;

  // The same distribution in other units (e.g. ticks -> ns).  min, max and
  // total are scaled exactly; each bucket's values move to its scaled middle.
  Histogram scaled(double factor) const;

 private:
  static constexpr size_t kSparseMax = 16;
  struct Entry {
    uint32_t index;
    uint64_t count;
  };
  void add_to_bucket(size_t index, uint64_t n) {
    if (!dense_.empty()) {
      dense_[index] += n;
      return;
    }
    add_sparse(index, n);
  }
  void add_sparse(size_t index, uint64_t n);
  // Calls fn(index, count) for every non-empty bucket, in increasing index.
  template <typename Fn>
  void for_each_bucket(Fn fn) const {
    if (dense_.empty()) {
      for (const Entry& e : sparse_) fn(size_t{e.index}, e.count);
      return;
    }
    for (size_t i = 0; i < kBucketCount; ++i)
      if (dense_[i]) fn(i, dense_[i]);
  }

  std::vector<Entry> sparse_;    // sorted by index; used while dense_ is empty
  std::vector<uint64_t> dense_;  // kBucketCount counters once sparse_ would outgrow kSparseMax
  uint64_t count_ = 0;
  unsigned __int128 total_ = 0;
  uint64_t min_ = UINT64_MAX;
  uint64_t max_ = 0;
};

}  // namespace gilstat::report

#include "report/histogram.hpp"

#include <algorithm>
#include <bit>
#include <cmath>

namespace gilstat::report {

namespace {

constexpr uint64_t kHalf = Histogram::kSubBuckets / 2;

// Rounds a non-negative double to uint64, saturating instead of overflowing.
uint64_t to_u64(long double x) {
  if (!(x > 0)) return 0;
  if (x >= 18446744073709551615.0L) return UINT64_MAX;
  return static_cast<uint64_t>(std::round(x));
}

uint64_t bucket_mid(size_t index) {
  const uint64_t lo = Histogram::bucket_lo(index);
  return lo + (Histogram::bucket_hi(index) - lo) / 2;
}

}  // namespace

uint64_t Histogram::bucket_lo(size_t index) {
  if (index < kSubBuckets) return index;
  const uint64_t j = index - kSubBuckets;
  const unsigned shift = static_cast<unsigned>(j / kHalf) + 1;
  return (kHalf + j % kHalf) << shift;
}

uint64_t Histogram::bucket_hi(size_t index) {
  if (index < kSubBuckets) return index;
  const unsigned shift = static_cast<unsigned>((index - kSubBuckets) / kHalf) + 1;
  return bucket_lo(index) + ((uint64_t{1} << shift) - 1);
}

void Histogram::add_sparse(size_t index, uint64_t n) {
  auto it = std::lower_bound(sparse_.begin(), sparse_.end(), index,
                             [](const Entry& e, size_t i) { return e.index < i; });
  if (it != sparse_.end() && it->index == index) {
    it->count += n;
    return;
  }
  if (sparse_.size() < kSparseMax) {
    sparse_.insert(it, Entry{static_cast<uint32_t>(index), n});
    return;
  }
  dense_.assign(kBucketCount, 0);
  for (const Entry& e : sparse_) dense_[e.index] = e.count;
  sparse_.clear();
  sparse_.shrink_to_fit();
  dense_[index] += n;
}

uint64_t Histogram::count_at(size_t index) const {
  if (!dense_.empty()) return index < kBucketCount ? dense_[index] : 0;
  for (const Entry& e : sparse_)
    if (e.index == index) return e.count;
  return 0;
}

void Histogram::merge(const Histogram& other) {
  if (other.count_ == 0) return;
  other.for_each_bucket([this](size_t i, uint64_t n) { add_to_bucket(i, n); });
  count_ += other.count_;
  total_ += other.total_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
}

uint64_t Histogram::percentile(double q) const {
  if (count_ == 0) return 0;
  q = std::clamp(std::isnan(q) ? 0.0 : q, 0.0, 1.0);
  const uint64_t rank =
      std::clamp<uint64_t>(to_u64(std::ceil(static_cast<long double>(q) * count_)), 1, count_);
  // The extreme ranks are known exactly; no need to guess inside a bucket.
  if (rank == 1) return min_;
  if (rank == count_) return max_;
  uint64_t seen = 0;
  uint64_t found = max_;  // stays so only if the buckets did not sum to count_
  bool done = false;
  for_each_bucket([&](size_t i, uint64_t n) {
    if (done) return;
    seen += n;
    if (seen >= rank) {
      found = std::clamp(bucket_mid(i), min_, max_);
      done = true;
    }
  });
  return found;
}

std::vector<Histogram::Bucket> Histogram::buckets() const {
  std::vector<Bucket> out;
  for_each_bucket([&](size_t i, uint64_t n) { out.push_back({bucket_lo(i), bucket_hi(i), n}); });
  return out;
}

Histogram Histogram::scaled(double factor) const {
  if (factor == 1.0 || count_ == 0) return *this;
  Histogram out;
  const uint64_t lo = to_u64(static_cast<long double>(min_) * factor);
  const uint64_t hi = to_u64(static_cast<long double>(max_) * factor);
  for_each_bucket([&](size_t i, uint64_t n) {
    // A bucket's middle is an estimate already: double arithmetic is exact
    // enough below 2^52 and several times cheaper than long double's roundl
    // (a live scrape scales every thread's histograms).
    const uint64_t mid = bucket_mid(i);
    const double x = static_cast<double>(mid) * factor;
    const uint64_t v = mid < (uint64_t{1} << 52) && x >= 0 && x < 0x1p52
                           ? static_cast<uint64_t>(x + 0.5)
                           : to_u64(static_cast<long double>(mid) * factor);
    out.add(std::clamp(v, lo, hi), n);
  });
  out.min_ = lo;
  out.max_ = hi;
  out.total_ = static_cast<unsigned __int128>(
      std::round(static_cast<long double>(total_) * static_cast<long double>(factor)));
  return out;
}

}  // namespace gilstat::report

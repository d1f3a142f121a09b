// Histogram maths against exact answers computed from the sorted values.
#include "report/histogram.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace gilstat::report {
namespace {

constexpr double kMaxRelError = 1.0 / Histogram::kSubBuckets;  // documented bound

// Nearest rank, the definition Histogram::percentile promises.
uint64_t exact_percentile(std::vector<uint64_t> sorted, double q) {
  const auto n = static_cast<uint64_t>(sorted.size());
  uint64_t rank = static_cast<uint64_t>(std::ceil(static_cast<long double>(q) * n));
  rank = std::clamp<uint64_t>(rank, 1, n);
  return sorted[rank - 1];
}

Histogram fill(const std::vector<uint64_t>& values) {
  Histogram h;
  for (uint64_t v : values) h.add(v);
  return h;
}

// Checks count, min, max, total exactly and every percentile within the bound.
void check_against_exact(std::vector<uint64_t> values) {
  std::sort(values.begin(), values.end());
  const Histogram h = fill(values);
  unsigned __int128 total = 0;
  for (uint64_t v : values) total += v;
  ASSERT_EQ(h.count(), values.size());
  EXPECT_TRUE(h.total() == total);
  EXPECT_EQ(h.min(), values.front());
  EXPECT_EQ(h.max(), values.back());
  for (double q : {0.0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0}) {
    const uint64_t want = exact_percentile(values, q);
    const uint64_t got = h.percentile(q);
    const double err = std::fabs(static_cast<double>(got) - static_cast<double>(want));
    EXPECT_LE(err, kMaxRelError * static_cast<double>(want) + 1e-9)
        << "q=" << q << " want=" << want << " got=" << got;
    EXPECT_GE(got, h.min());
    EXPECT_LE(got, h.max());
  }
  EXPECT_EQ(h.percentile(0.0), values.front());
  EXPECT_EQ(h.percentile(1.0), values.back());
}

TEST(Histogram, BucketsTileTheWholeRange) {
  EXPECT_EQ(Histogram::bucket_lo(0), 0u);
  EXPECT_EQ(Histogram::bucket_hi(Histogram::kBucketCount - 1), UINT64_MAX);
  for (size_t i = 0; i < Histogram::kBucketCount; ++i) {
    const uint64_t lo = Histogram::bucket_lo(i), hi = Histogram::bucket_hi(i);
    ASSERT_LE(lo, hi);
    ASSERT_EQ(Histogram::bucket_index(lo), i);
    ASSERT_EQ(Histogram::bucket_index(hi), i);
    if (i + 1 < Histogram::kBucketCount) {
      ASSERT_EQ(Histogram::bucket_lo(i + 1), hi + 1);
    }
    // A bucket is at most 2/kSubBuckets of its lower bound wide.
    if (lo >= Histogram::kSubBuckets) {
      ASSERT_LE(static_cast<double>(hi - lo + 1), 2.0 * kMaxRelError * static_cast<double>(lo));
    }
  }
}

TEST(Histogram, EmptyIsAllZero) {
  const Histogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.min(), 0u);
  EXPECT_EQ(h.max(), 0u);
  EXPECT_EQ(h.percentile(0.5), 0u);
  EXPECT_TRUE(h.buckets().empty());
}

TEST(Histogram, SmallValuesAreExact) {
  std::vector<uint64_t> values;
  for (uint64_t v = 0; v < Histogram::kSubBuckets; ++v) values.push_back(v);
  const Histogram h = fill(values);
  for (double q = 0.01; q <= 1.0; q += 0.01)
    EXPECT_EQ(h.percentile(q), exact_percentile(values, q)) << q;
}

TEST(Histogram, RandomDistributionsWithinErrorBound) {
  std::mt19937_64 rng(12345);
  std::vector<uint64_t> uniform, log_uniform, exponential;
  std::uniform_int_distribution<uint64_t> u(0, 10'000'000);
  std::uniform_real_distribution<double> e(0, 40);
  std::exponential_distribution<double> x(1.0 / 50'000);
  for (int i = 0; i < 100'000; ++i) {
    uniform.push_back(u(rng));
    log_uniform.push_back(static_cast<uint64_t>(std::exp2(e(rng))));
    exponential.push_back(static_cast<uint64_t>(x(rng)));
  }
  check_against_exact(uniform);
  check_against_exact(log_uniform);
  check_against_exact(exponential);
}

TEST(Histogram, AdversarialValues) {
  check_against_exact({42});
  check_against_exact(std::vector<uint64_t>(1000, 123'456'789));
  // Bucket edges: powers of two and their neighbours.
  std::vector<uint64_t> edges;
  for (int b = 0; b < 64; ++b) {
    const uint64_t p = uint64_t{1} << b;
    edges.insert(edges.end(), {p - 1, p, p + 1});
  }
  check_against_exact(edges);
  // Two far-apart clusters: the percentile must not land between them.
  std::vector<uint64_t> bimodal(990, 1'000);
  bimodal.insert(bimodal.end(), 10, uint64_t{1} << 62);
  check_against_exact(bimodal);
  // Totals beyond 64 bits stay exact.
  check_against_exact(std::vector<uint64_t>(16, UINT64_MAX));
}

TEST(Histogram, MergeEqualsOneHistogramOfEverything) {
  std::mt19937_64 rng(7);
  std::vector<uint64_t> a, b;
  for (int i = 0; i < 5000; ++i) a.push_back(rng() % 1'000'000);
  for (int i = 0; i < 3000; ++i) b.push_back(rng() % 50'000'000 + 7);
  Histogram ha = fill(a);
  ha.merge(fill(b));
  a.insert(a.end(), b.begin(), b.end());
  const Histogram all = fill(a);
  EXPECT_EQ(ha.count(), all.count());
  EXPECT_TRUE(ha.total() == all.total());
  EXPECT_EQ(ha.min(), all.min());
  EXPECT_EQ(ha.max(), all.max());
  for (size_t i = 0; i < Histogram::kBucketCount; ++i) ASSERT_EQ(ha.count_at(i), all.count_at(i));
  for (double q : {0.1, 0.5, 0.99}) EXPECT_EQ(ha.percentile(q), all.percentile(q));

  Histogram empty;
  empty.merge(all);
  EXPECT_EQ(empty.min(), all.min());
  EXPECT_EQ(empty.percentile(0.5), all.percentile(0.5));
}

TEST(Histogram, AddWithCountEqualsRepeatedAdds) {
  Histogram once, repeated;
  once.add(5000, 3);
  for (int i = 0; i < 3; ++i) repeated.add(5000);
  EXPECT_EQ(once.count(), repeated.count());
  EXPECT_TRUE(once.total() == repeated.total());
  EXPECT_EQ(once.percentile(0.5), repeated.percentile(0.5));
}

TEST(Histogram, BucketsListSumsToCount) {
  std::mt19937_64 rng(3);
  Histogram h;
  for (int i = 0; i < 10'000; ++i) h.add(rng() >> (rng() % 64));
  uint64_t sum = 0;
  uint64_t prev_hi = 0;
  bool first = true;
  for (const auto& b : h.buckets()) {
    EXPECT_GT(b.count, 0u);
    if (!first) {
      EXPECT_GT(b.lo, prev_hi);
    }
    prev_hi = b.hi;
    first = false;
    sum += b.count;
  }
  EXPECT_EQ(sum, h.count());
}

TEST(Histogram, ScaledConvertsUnits) {
  std::vector<uint64_t> ticks;
  for (uint64_t v = 1000; v < 2'000'000; v += 997) ticks.push_back(v);
  const Histogram h = fill(ticks);
  const Histogram ns = h.scaled(0.25);
  EXPECT_EQ(ns.count(), h.count());
  EXPECT_EQ(ns.min(), 250u);
  EXPECT_EQ(ns.max(), static_cast<uint64_t>(std::llround(ticks.back() * 0.25)));
  EXPECT_NEAR(static_cast<double>(ns.total()), static_cast<double>(h.total()) * 0.25, 1.0);
  for (double q : {0.1, 0.5, 0.9, 0.99}) {
    const double want = static_cast<double>(exact_percentile(ticks, q)) * 0.25;
    EXPECT_NEAR(static_cast<double>(ns.percentile(q)), want, 2 * kMaxRelError * want + 1) << q;
  }
  const Histogram same = h.scaled(1.0);
  EXPECT_EQ(same.percentile(0.5), h.percentile(0.5));
}

}  // namespace
}  // namespace gilstat::report

// test_histogram.cpp — Histogram: bucket geometry, percentiles against an exact
// sorted reference (uniform, exponential, bimodal, heavy tail), merge, edges.
#include "histogram.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

using ladder::Histogram;

namespace {

constexpr double kPercentiles[] = {0, 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99, 100};

// The nearest-rank percentile of sorted values, by the same definition as
// Histogram::percentile.
std::uint64_t exact(const std::vector<std::uint64_t>& sorted, double p) {
    auto rank = static_cast<std::uint64_t>(std::ceil(p / 100.0 * double(sorted.size())));
    rank = std::clamp<std::uint64_t>(rank, 1, sorted.size());
    return sorted[rank - 1];
}

// Records `values`, then checks count, min, max, mean and every percentile.
void check_against_reference(std::vector<std::uint64_t> values) {
    Histogram h;
    for (auto v : values) h.record(v);
    std::sort(values.begin(), values.end());
    REQUIRE(h.count() == values.size());
    CHECK(h.min() == values.front());
    CHECK(h.max() == values.back());
    double sum = 0;
    for (auto v : values) sum += double(v);
    CHECK(h.mean() == doctest::Approx(sum / double(values.size())));
    for (double p : kPercentiles) {
        std::uint64_t want = exact(values, p);
        std::uint64_t got = h.percentile(p);
        double error = std::fabs(double(got) - double(want));
        INFO("p", p, ": exact ", want, ", histogram ", got);
        CHECK(error <= Histogram::kRelativeError * double(want));
    }
}

template <class Distribution>
std::vector<std::uint64_t> draw(Distribution d, std::size_t n, std::uint32_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<std::uint64_t> values(n);
    for (auto& v : values) v = static_cast<std::uint64_t>(std::max(0.0, double(d(rng))));
    return values;
}

}  // namespace

TEST_CASE("bucket geometry: every value lands in a bucket that contains it") {
    CHECK(Histogram::index_of(0) == 0);
    CHECK(Histogram::index_of(127) == 127);
    CHECK(Histogram::index_of(128) == 128);
    CHECK(Histogram::index_of(129) == 128);
    CHECK(Histogram::index_of(Histogram::kMaxValue) == Histogram::kBuckets - 1);
    CHECK(Histogram::highest_in(Histogram::kBuckets - 1) == Histogram::kMaxValue);
    // Buckets tile the range with no gap and no overlap, each at most 1/64
    // as wide as its lowest value.
    for (std::size_t i = 0; i < Histogram::kBuckets; ++i) {
        auto low = Histogram::lowest_in(i), high = Histogram::highest_in(i);
        CHECK(Histogram::index_of(low) == i);
        CHECK(Histogram::index_of(high) == i);
        if (i > 0) CHECK(Histogram::highest_in(i - 1) + 1 == low);
        if (low >= 128) CHECK(double(high - low + 1) <= double(low) / 64);
        else CHECK(high == low);
    }
}

TEST_CASE("60 s in microseconds is well inside the range") {
    CHECK(Histogram::kMaxValue >= 60'000'000);
    Histogram h;
    h.record(60'000'000);
    CHECK(h.clamped() == 0);
    CHECK(std::fabs(double(h.percentile(50)) - 6e7) <= 6e7 * Histogram::kRelativeError);
}

TEST_CASE("percentiles are within the stated relative error") {
    SUBCASE("uniform 0..10 ms") {
        check_against_reference(
            draw(std::uniform_int_distribution<std::uint64_t>(0, 10'000), 200'000, 1));
    }
    SUBCASE("uniform over small values (exact buckets)") {
        check_against_reference(
            draw(std::uniform_int_distribution<std::uint64_t>(0, 127), 10'000, 2));
    }
    SUBCASE("exponential, mean 250 µs") {
        check_against_reference(
            draw(std::exponential_distribution<double>(1.0 / 250), 200'000, 3));
    }
    SUBCASE("bimodal: 95 % near 80 µs, 5 % near 40 ms") {
        std::mt19937_64 rng(4);
        std::normal_distribution<double> fast(80, 10), slow(40'000, 5'000);
        std::bernoulli_distribution is_slow(0.05);
        std::vector<std::uint64_t> values(200'000);
        for (auto& v : values) {
            double x = is_slow(rng) ? slow(rng) : fast(rng);
            v = static_cast<std::uint64_t>(std::max(0.0, x));
        }
        check_against_reference(std::move(values));
    }
    SUBCASE("log-normal heavy tail up to seconds") {
        check_against_reference(
            draw(std::lognormal_distribution<double>(6.0, 2.5), 100'000, 5));
    }
}

TEST_CASE("merge equals recording everything in one histogram") {
    std::mt19937_64 rng(6);
    std::exponential_distribution<double> d(1.0 / 1000);
    Histogram a, b, all;
    for (int i = 0; i < 50'000; ++i) {
        auto v = static_cast<std::uint64_t>(d(rng));
        (i % 3 ? a : b).record(v);
        all.record(v);
    }
    Histogram merged = a;
    merged.merge(b);
    CHECK(merged.count() == all.count());
    CHECK(merged.min() == all.min());
    CHECK(merged.max() == all.max());
    CHECK(merged.mean() == all.mean());
    CHECK(merged.json() == all.json());
    for (double p : kPercentiles) CHECK(merged.percentile(p) == all.percentile(p));

    Histogram empty;
    merged.merge(empty);
    CHECK(merged.json() == all.json());
    CHECK(merged.min() == all.min());
    empty.merge(all);
    CHECK(empty.json() == all.json());
    CHECK(empty.min() == all.min());
}

TEST_CASE("an empty histogram") {
    Histogram h;
    CHECK(h.count() == 0);
    CHECK(h.min() == 0);
    CHECK(h.max() == 0);
    CHECK(h.mean() == 0.0);
    CHECK(h.percentile(50) == 0);
    CHECK(h.percentile(100) == 0);
    CHECK(h.json() == "[]");
}

TEST_CASE("a single value is every percentile exactly") {
    for (std::uint64_t v : {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{127},
                            std::uint64_t{1000}, std::uint64_t{123'456'789}}) {
        Histogram h;
        h.record(v);
        CHECK(h.count() == 1);
        CHECK(h.min() == v);
        CHECK(h.max() == v);
        CHECK(h.mean() == double(v));
        for (double p : kPercentiles) CHECK(h.percentile(p) == v);
    }
}

TEST_CASE("a huge value is clamped into the last bucket and counted") {
    Histogram h;
    h.record(UINT64_MAX);
    h.record(Histogram::kMaxValue + 1);
    h.record(5);
    CHECK(h.count() == 3);
    CHECK(h.clamped() == 2);
    CHECK(h.max() == Histogram::kMaxValue);
    CHECK(h.percentile(100) == Histogram::kMaxValue);
    CHECK(h.percentile(0) == 5);
    auto last = std::to_string(Histogram::lowest_in(Histogram::kBuckets - 1)) + "," +
                std::to_string(Histogram::kMaxValue) + ",2]";
    CHECK(h.json() == "[[5,5,1],[" + last + "]");
}

TEST_CASE("out-of-range percentiles clamp to min and max") {
    Histogram h;
    for (std::uint64_t v = 10; v <= 1000; v += 10) h.record(v);
    CHECK(h.percentile(-5) == 10);
    CHECK(h.percentile(0) == 10);
    CHECK(h.percentile(250) == 1000);
}

TEST_CASE("json lists non-empty buckets, lowest first") {
    Histogram h;
    h.record(3);
    h.record(3);
    h.record(200);
    h.record(1);
    CHECK(h.json() == "[[1,1,1],[3,3,2],[200,201,1]]");
    h.reset();
    CHECK(h.count() == 0);
    CHECK(h.json() == "[]");
}

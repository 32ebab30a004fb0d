#include "histogram.h"

#include <algorithm>
#include <cassert>
#include <cmath>

namespace ladder {

std::uint64_t Histogram::lowest_in(std::size_t index) noexcept {
    assert(index < kBuckets);
    if (index < 2 * kSubCount) return index;
    auto shift = index / kSubCount - 1;
    return (kSubCount + index % kSubCount) << shift;
}

std::uint64_t Histogram::highest_in(std::size_t index) noexcept {
    if (index < 2 * kSubCount) return index;
    auto shift = index / kSubCount - 1;
    return lowest_in(index) + (std::uint64_t{1} << shift) - 1;
}

void Histogram::merge(const Histogram& other) noexcept {
    for (std::size_t i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
    count_ += other.count_;
    clamped_ += other.clamped_;
    sum_ += other.sum_;
    min_ = std::min(min_, other.min_);
    max_ = std::max(max_, other.max_);
}

std::uint64_t Histogram::percentile(double p) const noexcept {
    if (count_ == 0) return 0;
    p = std::clamp(p, 0.0, 100.0);
    // Nearest rank: the smallest value with at least p % of values at or below it.
    auto rank = static_cast<std::uint64_t>(std::ceil(p / 100.0 * double(count_)));
    rank = std::clamp<std::uint64_t>(rank, 1, count_);
    // The extremes are known exactly.
    if (rank == 1) return min_;
    if (rank == count_) return max_;
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
        seen += counts_[i];
        if (seen >= rank) {
            // The middle of the bucket: at most half a width (≤ 1/128 of the
            // bucket's lowest value) from anything in it.
            std::uint64_t low = lowest_in(i);
            std::uint64_t middle = low + (highest_in(i) - low) / 2;
            return std::clamp(middle, min_, max_);
        }
    }
    return max_;  // unreachable: the counts add up to count_
}

void Histogram::append_json(std::string& out) const {
    out += '[';
    bool first = true;
    for (std::size_t i = 0; i < kBuckets; ++i) {
        if (counts_[i] == 0) continue;
        if (!first) out += ',';
        first = false;
        out += '[';
        out += std::to_string(lowest_in(i));
        out += ',';
        out += std::to_string(highest_in(i));
        out += ',';
        out += std::to_string(counts_[i]);
        out += ']';
    }
    out += ']';
}

std::string Histogram::json() const {
    std::string out;
    append_json(out);
    return out;
}

}  // namespace ladder

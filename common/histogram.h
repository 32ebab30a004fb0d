// histogram.h — a latency histogram with bounded relative error.
//
// Log-linear buckets, as in HdrHistogram: values below 128 each have their
// own bucket; above that, every power-of-two range [2^k, 2^(k+1)) is split
// into 64 equal sub-buckets. A bucket's width is therefore at most 1/64 of
// its lowest value, whatever the magnitude:
//
//   value:   0 1 2 … 127 | 128 130 … 254 | 256 260 … 508 | 512 … | … 2^32-1
//   width:   1 1 1 …   1 |   2   2 …   2 |   4   4 …   4 |   8 … | … 2^25
//
// percentile() reports the middle of the bucket that holds the requested
// rank, so it is within 1/128 (0.8 %) of the exact value, never more (and
// exact below 128). Values are integers in the caller's unit (microseconds
// for the load generator); anything above kMaxValue (2^32 - 1, 71 minutes in
// µs) is recorded as kMaxValue and counted in clamped().
//
// The 1,728 counters (14 KiB) live inside the object: record() is a count of
// leading zeros, two shifts and an increment, and never allocates.
// Thread rule: one writer per histogram; give each thread its own and
// merge() them at the end.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace ladder {

class Histogram {
public:
    static constexpr int kSubBits = 6;                          // 64 sub-buckets
    static constexpr std::uint64_t kSubCount = 1u << kSubBits;  // per power of two
    static constexpr int kTopBits = 32;
    static constexpr std::uint64_t kMaxValue = (std::uint64_t{1} << kTopBits) - 1;
    // 0..127 exactly, then 64 buckets for each of the octaves 2^7 … 2^31.
    static constexpr std::size_t kBuckets =
        2 * kSubCount + (kTopBits - kSubBits - 1) * kSubCount;
    // The worst relative distance between percentile() and the exact value.
    static constexpr double kRelativeError = 1.0 / (2 * kSubCount);

    void record(std::uint64_t value) noexcept {
        if (value > kMaxValue) {
            value = kMaxValue;
            ++clamped_;
        }
        ++counts_[index_of(value)];
        ++count_;
        sum_ += value;
        if (value < min_) min_ = value;
        if (value > max_) max_ = value;
    }

    // Adds every value recorded in `other`, as if recorded here.
    void merge(const Histogram& other) noexcept;
    void reset() noexcept { *this = Histogram{}; }

    std::uint64_t count() const noexcept { return count_; }
    std::uint64_t clamped() const noexcept { return clamped_; }
    std::uint64_t min() const noexcept { return count_ ? min_ : 0; }
    std::uint64_t max() const noexcept { return max_; }
    double mean() const noexcept { return count_ ? double(sum_) / double(count_) : 0.0; }

    // The value at rank ceil(p/100 · count) (nearest rank; p in [0, 100]),
    // within kRelativeError of the exact one and inside [min, max]; the
    // first and last ranks are min() and max() exactly. 0 when empty.
    std::uint64_t percentile(double p) const noexcept;

    // Compact JSON of the non-empty buckets, lowest first:
    //   [[low,high,count],...]   low ≤ value ≤ high, integers
    std::string json() const;
    void append_json(std::string& out) const;

    // Bucket geometry, for tests and for readers of the JSON.
    static std::size_t index_of(std::uint64_t value) noexcept {
        if (value < 2 * kSubCount) return static_cast<std::size_t>(value);
        // value lies in [64·2^shift, 128·2^shift): buckets 2^shift wide.
        int shift = 63 - __builtin_clzll(value) - kSubBits;
        return static_cast<std::size_t>(kSubCount * (unsigned(shift) + 1) +
                                        (value >> shift) - kSubCount);
    }
    static std::uint64_t lowest_in(std::size_t index) noexcept;
    static std::uint64_t highest_in(std::size_t index) noexcept;

private:
    std::array<std::uint64_t, kBuckets> counts_{};
    std::uint64_t count_ = 0;
    std::uint64_t clamped_ = 0;
    std::uint64_t sum_ = 0;
    std::uint64_t min_ = UINT64_MAX;
    std::uint64_t max_ = 0;
};

}  // namespace ladder

// test_buffer.cpp — Buffer: append/readable/consume, writable/commit, reuse, growth.
#include "buffer.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <string>
#include <string_view>

using ladder::Buffer;

namespace {

constexpr std::size_t kLargest = 8 << 20;

// Deterministic, position-dependent bytes (period 23): a misplaced slide shows
// up as a mismatch. A view into one string built once, so the tests stay quick.
std::string_view pattern(std::size_t offset, std::size_t n) {
    static const std::string bytes = [] {
        std::string s(kLargest + 23, '\0');
        for (std::size_t i = 0; i < s.size(); ++i) s[i] = static_cast<char>('a' + i % 23);
        return s;
    }();
    return std::string_view(bytes).substr(offset % 23, n);
}

// One past the last byte of the buffer's storage; writable(0) never slides or grows.
const char* storage_end(Buffer& b) {
    auto space = b.writable(0);
    return space.data() + space.size();
}

}  // namespace

TEST_CASE("an empty buffer") {
    Buffer b;
    CHECK(b.empty());
    CHECK(b.size() == 0);
    CHECK(b.readable().empty());
    CHECK(b.writable(0).size() == 0);
    b.append("");
    CHECK(b.empty());
    b.commit(0);
    CHECK(b.empty());
    b.clear();
    CHECK(b.empty());
}

TEST_CASE("append, readable and consume, step by step") {
    // Each row acts on the buffer left by the row before it.
    struct Step {
        const char* append;
        std::size_t consume;
        const char* readable_after;
    };
    const Step steps[] = {
        {"hello", 0, "hello"},
        {" world", 0, "hello world"},
        {"", 6, "world"},
        {"!", 1, "orld!"},
        {"", 5, ""},
        {"again", 2, "ain"},
    };
    Buffer b;
    for (const Step& s : steps) {
        CAPTURE(s.append);
        CAPTURE(s.consume);
        b.append(s.append);
        b.consume(s.consume);
        CHECK(b.readable() == s.readable_after);
        CHECK(b.size() == std::strlen(s.readable_after));
        CHECK(b.empty() == (*s.readable_after == '\0'));
    }
}

TEST_CASE("writable and commit") {
    Buffer b;
    auto space = b.writable(100);
    REQUIRE(space.size() >= 100);
    std::memcpy(space.data(), "0123456789", 10);
    b.commit(4);  // only part of what was written is committed
    CHECK(b.readable() == "0123");

    auto more = b.writable(1);
    REQUIRE(more.size() >= 1);
    CHECK(more.data() == b.readable().data() + 4);  // the write end follows the data
    more[0] = 'x';
    b.commit(1);
    CHECK(b.readable() == "0123x");

    b.commit(0);
    CHECK(b.readable() == "0123x");
}

TEST_CASE("writable(min) slides unconsumed bytes forward instead of growing") {
    Buffer b;
    b.append(pattern(0, 64));
    const char* start = b.readable().data();
    const char* end = storage_end(b);
    const std::size_t capacity = static_cast<std::size_t>(end - start);
    b.consume(60);  // 4 live bytes at the far end
    auto space = b.writable(capacity - 4);  // fits only if the 4 bytes move to the front
    CHECK(space.size() >= capacity - 4);
    CHECK(b.readable() == pattern(60, 4));
    CHECK(b.readable().data() == start);
    CHECK(storage_end(b) == end);
}

TEST_CASE("consuming everything rewinds to the start of the storage") {
    Buffer b;
    b.writable(4096);  // room to spare: only the rewind brings "xy" back to the start
    b.append("abcdef");
    const char* start = b.readable().data();
    b.consume(2);
    CHECK(b.readable().data() == start + 2);
    b.consume(4);
    CHECK(b.empty());
    b.append("xy");
    CHECK(b.readable() == "xy");
    CHECK(b.readable().data() == start);
}

TEST_CASE("clear() forgets the bytes and keeps the storage") {
    Buffer b;
    b.append("abcdef");
    const char* start = b.readable().data();
    b.clear();
    CHECK(b.empty());
    CHECK(b.size() == 0);
    b.append("z");
    CHECK(b.readable() == "z");
    CHECK(b.readable().data() == start);
}

TEST_CASE("a reader that keeps up reuses one allocation") {
    // A steady backlog: each round appends `chunk` and consumes `chunk`, so the
    // buffer never empties (no rewind) and read_ keeps advancing. Only sliding
    // the live bytes forward keeps it from growing.
    struct Case {
        std::size_t backlog;
        std::size_t chunk;
    };
    const Case cases[] = {{1, 1}, {50, 100}, {1000, 3000}, {4095, 4097}, {10, 65536}};
    for (const Case& c : cases) {
        CAPTURE(c.backlog);
        CAPTURE(c.chunk);
        Buffer b;
        std::size_t produced = 0, consumed = 0;
        auto produce = [&] {
            b.append(pattern(produced, c.chunk));
            produced += c.chunk;
        };
        b.append(pattern(0, c.backlog));
        produced = c.backlog;
        // Warm up: let the storage reach its working size.
        for (int i = 0; i < 8; ++i) {
            produce();
            b.consume(c.chunk);
            consumed += c.chunk;
        }
        const char* end = storage_end(b);
        bool stayed = true, intact = true;
        for (int i = 0; i < 2000; ++i) {
            produce();
            b.consume(c.chunk);
            consumed += c.chunk;
            if (storage_end(b) != end) stayed = false;
            if (b.readable() != pattern(consumed, c.backlog)) intact = false;
            if (!stayed || !intact) break;
        }
        CHECK(stayed);
        CHECK(intact);
        CHECK(b.size() == c.backlog);
    }
}

TEST_CASE("large growth keeps every byte in order") {
    // Interleaved appends and partial consumes, with growth on the way.
    struct Case {
        std::size_t total;
        std::size_t chunk;
        std::size_t consume_every;  // consume half the backlog after this many appends
    };
    const Case cases[] = {
        {1 << 20, 1, 4096},
        {1 << 20, 7, 1000},
        {4 << 20, 4096, 3},
        {kLargest, 65537, 1},
        {kLargest, kLargest, 1},  // one append of 8 MiB into an empty buffer
    };
    for (const Case& c : cases) {
        CAPTURE(c.total);
        CAPTURE(c.chunk);
        Buffer b;
        std::size_t produced = 0, consumed = 0, appends = 0;
        bool intact = true;
        while (produced < c.total) {
            std::size_t n = std::min(c.chunk, c.total - produced);
            b.append(pattern(produced, n));
            produced += n;
            if (++appends % c.consume_every == 0) {
                std::size_t take = b.size() / 2;
                if (b.readable().substr(0, take) != pattern(consumed, take)) intact = false;
                b.consume(take);
                consumed += take;
            }
        }
        CHECK(intact);
        CHECK(b.size() == produced - consumed);
        CHECK(b.readable() == pattern(consumed, produced - consumed));
        b.consume(b.size());
        CHECK(b.empty());
    }
}

TEST_CASE("writable(min) on a grown buffer still gives at least min") {
    const std::size_t mins[] = {0, 1, 4096, 65536, 1 << 20};
    Buffer b;
    b.append("keep");
    for (std::size_t min : mins) {
        CAPTURE(min);
        auto space = b.writable(min);
        CHECK(space.size() >= min);
        CHECK(b.readable() == "keep");
    }
}

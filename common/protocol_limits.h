// protocol_limits.h — every size and range limit of the protocols, in one place.
//
// Each limit bounds what one connection can make the server hold or do.
// Requests past a limit get the status beside it and the connection closes
// (413, 414 and 431 are answered without waiting for the rest of the bytes).
//
// (Not "limits.h": common/ is on every target's include path, and that name
// would shadow the C library's <limits.h> that <climits> includes.)
#pragma once

#include <cstddef>
#include <cstdint>

namespace ladder {

#ifndef LADDER_FUZZ_LIMITS  // (tests/fuzz builds with tiny ones: see #else)

// The request line, without its CRLF. Longer: 414 URI Too Long.
inline constexpr std::size_t kMaxRequestLine = 8 * 1024;

// The header block: every field line and the empty line that ends the head,
// CRLFs included. Longer: 431 Request Header Fields Too Large.
inline constexpr std::size_t kMaxHeaderBlock = 16 * 1024;

// Field lines per request. More: 431. The parser keeps a view of each one in a
// fixed array, so the count is bounded as well as the bytes.
inline constexpr std::size_t kMaxHeaders = 128;

// A request body (Content-Length). Larger: 413 Content Too Large.
inline constexpr std::uint64_t kMaxBody = 1024 * 1024;

// A frame's payload (--mode frame: a 4-byte big-endian length, then that
// many bytes). Longer: the connection is closed (its next boundary is lost).
inline constexpr std::uint32_t kMaxFrame = 1024 * 1024;

// A session stops answering (and so stops asking to read) while its output
// holds more than this: a client that sends requests but never reads the
// answers costs at most this much memory, not an unbounded queue.
inline constexpr std::size_t kOutputHighWater = 256 * 1024;

#else
// Fuzz builds only (tests/fuzz/CMakeLists.txt): the same rules with limits a
// few bytes long, so that inputs a fuzzer can afford cross every one of them.
inline constexpr std::size_t kMaxRequestLine = 64;
inline constexpr std::size_t kMaxHeaderBlock = 128;
inline constexpr std::size_t kMaxHeaders = 8;
inline constexpr std::uint64_t kMaxBody = 256;
inline constexpr std::size_t kOutputHighWater = 512;
inline constexpr std::uint32_t kMaxFrame = 256;
#endif

// GET /work?ms=N sleeps N milliseconds; past this N is a 400, not a long sleep.
inline constexpr std::uint64_t kMaxWorkMs = 10'000;

// GET /cpu?n=N runs N hash rounds (about 2 ns each): at most a fraction of a second.
inline constexpr std::uint64_t kMaxCpuRounds = 200'000'000;

}  // namespace ladder

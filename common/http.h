// http.h — an incremental HTTP/1.1 request-head parser, in picohttpparser's shape.
//
// parse_request() keeps no state between calls: it is given every byte of
// the request received so far and answers "complete, the head is N bytes",
// "partial, call again with more", or "error, answer this status". The
// Request it fills holds views into the caller's bytes, so nothing is copied.
//
// It works a line at a time: it finds a line's LF (memchr), then checks the
// whole line. So a line's errors are reported once the line has ended, and
// the answer for any prefix of the input is either "partial" or the answer
// for the whole input — however the bytes were split by the network.
//
// Policy (RFC 9112 leaves these to the server; the strict choice everywhere,
// because two parsers that disagree about framing are how requests get
// smuggled past a proxy):
//   - Bare LF: rejected with 400. Every line must end in CRLF (§2.2 allows
//     accepting a bare LF; we do not). A bare CR anywhere is a 400 too.
//   - obs-fold (a field line starting with SP or HT): 400 (§5.2).
//   - Whitespace between a field name and its colon: 400 (§5.1).
//   - Control characters or NUL in a field value, name or target: 400.
//   - Content-Length: digits only (no sign, spaces, hex, list); a value that
//     overflows 64 bits is a 400; any second Content-Length, even an identical
//     one, is a 400 (RFC 9110 §8.6 allows identical duplicates; rejecting them
//     is the simpler safe choice). Larger than kMaxBody: 413.
//   - Transfer-Encoding of any value: 501 (no chunked support); together with
//     Content-Length: 400 (§6.1).
//   - Host: HTTP/1.1 needs exactly one; more than one is a 400 in any version
//     (§3.2). HTTP/1.0 may omit it.
//   - Version: "HTTP/" DIGIT "." DIGIT or 400; anything but 1.0 and 1.1 is 505.
//     The version is checked when the request line ends, before the headers.
//   - One empty line (CRLF) before the request line is skipped (§2.2 "SHOULD
//     ignore at least one"); a second one is a malformed request line.
//   - Targets: origin-form (/path?query), absolute-form (http://host/path,
//     §3.2.2 "MUST accept") and "*". Nothing is percent-decoded.
//   - Limits (protocol_limits.h): request line > kMaxRequestLine is 414, header
//     block > kMaxHeaderBlock or more than kMaxHeaders fields is 431 — answered
//     as soon as the limit is crossed, without waiting for a line end, so a
//     never-ending line holds bounded memory.
#pragma once

#include "protocol_limits.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace ladder {

struct Header {
    std::string_view name;   // as sent: compare with iequals()
    std::string_view value;  // without surrounding spaces and tabs
};

// One request head. Every view points into the buffer given to parse_request.
struct Request {
    std::string_view method;           // case-sensitive token (RFC 9110 §9.1)
    std::string_view target;           // as sent
    std::string_view path;             // target without query; "/" for "http://host"
    std::string_view query;            // after '?', without it; empty when none
    int minor_version = 1;             // HTTP/1.<minor_version>: 0 or 1
    std::uint64_t content_length = 0;  // 0 when absent
    bool keep_alive = true;  // the connection may carry another request after this
    std::size_t header_count = 0;
    std::array<Header, kMaxHeaders> headers;

    std::span<const Header> fields() const noexcept {
        return {headers.data(), header_count};
    }
    // The first field called `name` (any case), or nullopt.
    std::optional<std::string_view> header(std::string_view name) const noexcept;
};

struct ParseResult {
    enum State : std::uint8_t { complete, partial, error };
    State state = partial;
    int status = 0;         // error: the HTTP status to answer before closing
    std::size_t bytes = 0;  // complete: bytes of the head, through its CRLF CRLF

    static ParseResult done(std::size_t n) noexcept { return {complete, 0, n}; }
    static ParseResult more() noexcept { return {partial, 0, 0}; }
    static ParseResult fail(int http_status) noexcept { return {error, http_status, 0}; }
};

// Parses the request head at the start of `buf`. The body (content_length
// bytes) follows the head; parse_request does not look at it.
//
// last_len (picohttpparser's): the size of `buf` at the previous call for
// this same request, if that call answered partial; else 0. When no LF has
// arrived since, no line can have ended, so the lines are not parsed again
// (only the limits are checked): bytes arriving one at a time cost O(n) in
// total, not O(n^2).
ParseResult parse_request(std::string_view buf, Request& out, std::size_t last_len = 0);

// ASCII case-insensitive equality, for field names and tokens.
bool iequals(std::string_view a, std::string_view b) noexcept;

// A non-negative decimal: one or more digits and nothing else. nullopt on
// anything else, including a value that does not fit in 64 bits.
std::optional<std::uint64_t> parse_decimal(std::string_view digits) noexcept;

// The value of `key` in a query "a=1&b=2" (the first one), or nullopt.
std::optional<std::string_view> query_param(std::string_view query,
                                            std::string_view key) noexcept;

}  // namespace ladder

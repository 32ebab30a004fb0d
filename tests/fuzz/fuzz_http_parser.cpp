// fuzz_http_parser.cpp — libFuzzer target: common/http.h's parse_request.
//
// libFuzzer hands over a heap copy of exactly `size` bytes, so ASan catches
// any read past the end (the unit tests' guard page, for every input).
// Beyond "no crash", it checks what http.h promises:
//   1. complete: the head ends in CRLF CRLF within the limits, every view
//      points into it, and nothing in it breaks the policy (bare CR or LF,
//      controls, two Content-Length, Transfer-Encoding, a missing Host);
//   2. every prefix answers "partial" or the whole input's answer: however
//      the network splits the bytes, the server answers the same;
//   3. fed in pieces with last_len, the final answer is the same;
//   4. the head alone parses exactly as it did with bytes after it.
// A failed check aborts with a message: the input is the reproducer.
// Make every finding a row in tests/unit/test_http.cpp.
#include "http.h"
#include "protocol_limits.h"

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <system_error>
#include <vector>

using ladder::ParseResult;
using ladder::Request;

namespace {

[[noreturn]] void fail(const char* what, int a = 0, int b = 0) {
    std::fprintf(stderr, "fuzz_http_parser: %s (%d, %d)\n", what, a, b);
    std::abort();
}

void check(bool ok, const char* what, int a = 0, int b = 0) {
    if (!ok) fail(what, a, b);
}

// 200 complete, 0 partial, else the error status: one int to compare.
int outcome(const ParseResult& r) {
    return r.state == ParseResult::complete ? 200
           : r.state == ParseResult::partial ? 0
                                             : r.status;
}

bool inside(std::string_view part, std::string_view whole) {
    return part.empty() ||
           (part.data() >= whole.data() &&
            part.data() + part.size() <= whole.data() + whole.size());
}

bool tchar(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// What a complete head must be, checked from the bytes themselves.
void check_complete(std::string_view buf, const ParseResult& r, const Request& req) {
    check(r.bytes >= 4 && r.bytes <= buf.size(), "head size", int(r.bytes));
    std::string_view head = buf.substr(0, r.bytes);
    check(head.ends_with("\r\n\r\n"), "head does not end in CRLF CRLF");
    for (std::size_t i = 0; i < head.size(); ++i) {
        if (head[i] == '\n') check(i > 0 && head[i - 1] == '\r', "bare LF", int(i));
        if (head[i] == '\r')
            check(i + 1 < head.size() && head[i + 1] == '\n', "bare CR", int(i));
        if (head[i] == '\0') fail("NUL in a complete head", int(i));
    }
    // The request line: at most one leading CRLF, then within its limit.
    std::size_t start = head.starts_with("\r\n") ? 2 : 0;
    std::size_t line_end = head.find("\r\n", start);
    check(line_end - start <= ladder::kMaxRequestLine, "request line over the limit");
    check(head.size() - (line_end + 2) <= ladder::kMaxHeaderBlock, "header block over");

    check(!req.method.empty() && inside(req.method, head), "method view");
    for (char c : req.method) check(tchar(c), "method is not a token");
    check(!req.target.empty() && inside(req.target, head), "target view");
    for (char c : req.target) check(c > 0x20 && c < 0x7f, "target byte", c);
    check(!req.path.empty(), "empty path");
    check(inside(req.query, head), "query view");
    check(req.minor_version == 0 || req.minor_version == 1, "version", req.minor_version);
    check(req.content_length <= ladder::kMaxBody, "body over the limit");
    check(req.header_count <= ladder::kMaxHeaders, "too many fields");

    int hosts = 0, lengths = 0;
    for (const ladder::Header& h : req.fields()) {
        check(!h.name.empty() && inside(h.name, head) && inside(h.value, head), "field view");
        for (char c : h.name) check(tchar(c), "field name is not a token");
        for (char c : h.value) {
            auto u = static_cast<unsigned char>(c);
            check(u >= 0x80 || u == '\t' || (u >= 0x20 && u != 0x7f), "value byte", u);
        }
        check(h.value.empty() || (h.value.front() != ' ' && h.value.front() != '\t' &&
                                  h.value.back() != ' ' && h.value.back() != '\t'),
              "value not trimmed");
        check(!ladder::iequals(h.name, "transfer-encoding"), "Transfer-Encoding accepted");
        if (ladder::iequals(h.name, "host")) ++hosts;
        if (ladder::iequals(h.name, "content-length")) {
            ++lengths;
            check(ladder::parse_decimal(h.value) == req.content_length, "Content-Length");
        }
    }
    check(lengths <= 1, "two Content-Length accepted");
    check(lengths == 1 || req.content_length == 0, "a length from nowhere");
    check(req.minor_version == 1 ? hosts == 1 : hosts <= 1, "Host count", hosts);
}

// Property 2: the prefixes worth trying (all of them for short inputs).
std::vector<std::size_t> prefixes(std::string_view buf) {
    std::vector<std::size_t> at;
    if (buf.size() <= 512) {
        for (std::size_t n = 0; n < buf.size(); ++n) at.push_back(n);
        return at;
    }
    std::size_t step = buf.size() / 128 + 1;
    for (std::size_t n = 0; n < buf.size(); n += step) at.push_back(n);
    // Around each line end: where answers change.
    std::size_t lines = 0;
    for (std::size_t i = buf.find('\n'); i != std::string_view::npos && lines < 64;
         i = buf.find('\n', i + 1), ++lines) {
        at.push_back(i);
        at.push_back(i + 1);
    }
    return at;
}

void check_prefixes(std::string_view buf, int final_answer, std::size_t head_end) {
    Request req;
    for (std::size_t n : prefixes(buf)) {
        if (n >= buf.size()) continue;
        int got = outcome(ladder::parse_request(buf.substr(0, n), req));
        if (final_answer == 200)
            check(got == (n < head_end ? 0 : 200), "prefix of a complete head", int(n), got);
        else
            check(got == 0 || got == final_answer, "prefix answer differs", int(n), got);
    }
}

// Property 3: pieces of a size picked from the input, with last_len.
void check_pieces(std::string_view buf, int final_answer) {
    const std::size_t sizes[] = {1, 2, 3, 7, 64, 509, 4096};
    std::size_t piece = sizes[buf.empty() ? 0 : static_cast<unsigned char>(buf.back()) % 7];
    if (piece == 1 && buf.size() > 4096) piece = 61;  // keep one run O(n) calls, not O(n^2)
    Request req;
    std::size_t last_len = 0;
    int got = 0;
    for (std::size_t n = 0; got == 0; n = std::min(n + piece, buf.size())) {
        got = outcome(ladder::parse_request(buf.substr(0, n), req, last_len));
        last_len = n;
        if (n == buf.size()) break;
    }
    check(got == final_answer, "answer differs when fed in pieces", final_answer, got);
}

// parse_decimal against std::from_chars: digits only, 64 bits.
void check_decimal(std::string_view text) {
    text = text.substr(0, 24);
    std::optional<std::uint64_t> got = ladder::parse_decimal(text);
    bool digits = !text.empty() && text.find_first_not_of("0123456789") == text.npos;
    std::uint64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    bool ok = digits && ec == std::errc{} && end == text.data() + text.size();
    check(got.has_value() == ok && (!ok || *got == value), "parse_decimal");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view buf(reinterpret_cast<const char*>(data), size);
    Request req;
    ParseResult r = ladder::parse_request(buf, req);
    int answer = outcome(r);
    switch (answer) {
    case 0: case 200: case 400: case 413: case 414: case 431: case 501: case 505: break;
    default: fail("unexpected status", answer);
    }
    if (r.state == ParseResult::complete) {
        check_complete(buf, r, req);
        // Property 4: what follows the head changes nothing.
        Request alone;
        ParseResult again = ladder::parse_request(buf.substr(0, r.bytes), alone);
        check(again.state == ParseResult::complete && again.bytes == r.bytes, "head alone");
        check(alone.header_count == req.header_count &&
                  alone.content_length == req.content_length &&
                  alone.keep_alive == req.keep_alive && alone.path == req.path,
              "head alone parses differently");
        (void)ladder::query_param(req.query, "ms");
    }
    check_prefixes(buf, answer, r.state == ParseResult::complete ? r.bytes : 0);
    check_pieces(buf, answer);
    check_decimal(buf);
    return 0;
}

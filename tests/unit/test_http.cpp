// test_http.cpp — the request parser: complete, partial and rejected heads,
// every limit at its boundary, smuggling cases, and no byte read past the end.
//
// Every input is parsed where it ends exactly at an unreadable page
// (picohttpparser's test trick): a parser that looks one byte too far
// crashes instead of passing by luck.
#include "http.h"

#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <string_view>
#include <sys/mman.h>
#include <unistd.h>
#include <vector>

using namespace std::string_literals;
using ladder::ParseResult;
using ladder::Request;

namespace {

// A mapping whose last page is PROT_NONE. place() copies bytes so that they
// end where that page begins.
class GuardedBytes {
public:
    explicit GuardedBytes(std::size_t capacity) {
        page_ = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
        data_bytes_ = (capacity / page_ + 1) * page_;
        void* p = ::mmap(nullptr, data_bytes_ + page_, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        REQUIRE(p != MAP_FAILED);
        base_ = static_cast<char*>(p);
        REQUIRE(::mprotect(base_ + data_bytes_, page_, PROT_NONE) == 0);
    }
    ~GuardedBytes() { ::munmap(base_, data_bytes_ + page_); }
    GuardedBytes(const GuardedBytes&) = delete;
    GuardedBytes& operator=(const GuardedBytes&) = delete;

    std::string_view place(std::string_view bytes) {
        REQUIRE(bytes.size() <= data_bytes_);
        char* start = base_ + data_bytes_ - bytes.size();
        if (!bytes.empty()) std::memcpy(start, bytes.data(), bytes.size());
        return {start, bytes.size()};
    }

private:
    std::size_t page_ = 0;
    std::size_t data_bytes_ = 0;
    char* base_ = nullptr;
};

// 200: complete; 0: partial; anything else: the error status.
constexpr int kComplete = 200;
constexpr int kPartial = 0;

int outcome(const ParseResult& r) {
    switch (r.state) {
    case ParseResult::complete: return kComplete;
    case ParseResult::partial: return kPartial;
    case ParseResult::error: return r.status;
    }
    return -1;
}

ParseResult parse_guarded(std::string_view input, Request& req,
                          std::size_t last_len = 0) {
    static GuardedBytes guarded(64 * 1024);
    return ladder::parse_request(guarded.place(input), req, last_len);
}

std::string pad(std::size_t n, char c = 'a') { return std::string(n, c); }

// "GET /aaa… HTTP/1.1": a request line of exactly n characters.
std::string line_of(std::size_t n) { return "GET /" + pad(n - 14) + " HTTP/1.1"; }

// A header block (field lines and the final CRLF) of exactly n bytes.
std::string block_of(std::size_t n) {
    return "Host: a\r\nX: " + pad(n - 16) + "\r\n\r\n";
}

std::string many_fields(std::size_t n) {
    std::string s = "GET / HTTP/1.1\r\nHost: a\r\n";
    for (std::size_t i = 1; i < n; ++i) s += "X-" + std::to_string(i) + ": v\r\n";
    return s + "\r\n";
}

std::string post(std::string_view length_field, std::string_view body = "hello") {
    return "POST /echo HTTP/1.1\r\nHost: a\r\n"s + std::string(length_field) +
           "\r\n\r\n" + std::string(body);
}

const std::string kHead = "GET /hello HTTP/1.1\r\nHost: a\r\n";  // without its end

struct Row {
    std::string name;
    std::string input;
    int expect;
};

const std::vector<Row>& rows() {
    static const std::vector<Row> table = {
        // complete
        {"minimal 1.1", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", kComplete},
        {"1.0 without Host", "GET /hello HTTP/1.0\r\n\r\n", kComplete},
        {"body follows", post("Content-Length: 5"), kComplete},
        {"body looks like a request", post("Content-Length: 9", "\r\n\r\nGET /"),
         kComplete},
        {"empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", kComplete},
        {"unknown method", "BREW /pot HTTP/1.1\r\nHost: a\r\n\r\n", kComplete},
        {"lowercase method is a token", "get / HTTP/1.1\r\nHost: a\r\n\r\n", kComplete},
        {"one leading CRLF", "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", kComplete},
        {"absolute-form", "GET http://a/x?y=1 HTTP/1.1\r\nHost: a\r\n\r\n", kComplete},
        {"asterisk-form", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", kComplete},
        {"obs-text in a value", "GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n",
         kComplete},
        {"tab inside a value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\tb\r\n\r\n", kComplete},
        {"Content-Length 0", post("Content-Length: 0", ""), kComplete},
        {"Content-Length leading zeros", post("Content-Length: 005"), kComplete},
        {"Content-Length at the limit", post("Content-Length: 1048576", ""), kComplete},
        {"request line of 8 KiB", line_of(8192) + "\r\nHost: a\r\n\r\n", kComplete},
        {"header block of 16 KiB", "GET / HTTP/1.1\r\n" + block_of(16384), kComplete},
        {"128 fields", many_fields(128), kComplete},
        // partial
        {"empty", "", kPartial},
        {"method only", "GET", kPartial},
        {"request line without CRLF", "GET / HTTP/1.1", kPartial},
        {"request line and CR", "GET / HTTP/1.1\r", kPartial},
        {"no empty line yet", kHead, kPartial},
        {"final CR", kHead + "\r", kPartial},
        {"leading CRLF alone", "\r\n", kPartial},
        {"8 KiB line, no CRLF yet", line_of(8192), kPartial},
        {"8 KiB line and CR", line_of(8192) + "\r", kPartial},
        {"16 KiB block, no end yet",
         "GET / HTTP/1.1\r\n" + block_of(16384).substr(0, 16383), kPartial},
        // malformed request line: 400
        {"garbage", "GARBAGE\r\n\r\n", 400},
        {"no version", "GET /hello\r\n\r\n", 400},
        {"extra token", "GET /hello HTTP/1.1 x\r\nHost: a\r\n\r\n", 400},
        {"leading space", " GET /hello HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"two spaces", "GET  /hello HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"tab separator", "GET\t/hello HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"trailing space", "GET /hello HTTP/1.1 \r\nHost: a\r\n\r\n", 400},
        {"empty line only", "\r\n\r\n", 400},
        {"two leading CRLFs", "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"target without slash", "GET hello HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"NUL in target", "GET /a\0b HTTP/1.1\r\nHost: a\r\n\r\n"s, 400},
        {"control in target", "GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"DEL in target", "GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"non-token method", "GE(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        // versions: malformed 400, unsupported 505
        {"HTTX", "GET /hello HTTX/1.1\r\nHost: a\r\n\r\n", 400},
        {"lowercase http", "GET / http/1.1\r\nHost: a\r\n\r\n", 400},
        {"HTTP/1", "GET / HTTP/1\r\nHost: a\r\n\r\n", 400},
        {"HTTP/1.10", "GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400},
        {"HTTP/11", "GET / HTTP/11\r\nHost: a\r\n\r\n", 400},
        {"HTTP/a.b", "GET / HTTP/a.b\r\nHost: a\r\n\r\n", 400},
        {"HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
        {"HTTP/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505},
        {"HTTP/3.0", "GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505},
        {"HTTP/0.9", "GET / HTTP/0.9\r\n\r\n", 505},
        {"505 before the headers end", "GET / HTTP/2.0\r\nHost: a\r\n", 505},
        // malformed fields: 400
        {"no colon", kHead + "NoColon\r\n\r\n", 400},
        {"space in name", kHead + "Bad Name: x\r\n\r\n", 400},
        {"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400},
        {"tab before colon", "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 400},
        {"empty name", kHead + ": x\r\n\r\n", 400},
        {"obs-fold with SP", kHead + "X: a\r\n b\r\n\r\n", 400},
        {"obs-fold with HT", kHead + "X: a\r\n\tb\r\n\r\n", 400},
        {"NUL in value", kHead + "X: a\0b\r\n\r\n"s, 400},
        {"control in value", kHead + "X: a\x01\r\n\r\n", 400},
        {"DEL in value", kHead + "X: a\x7f\r\n\r\n", 400},
        {"NUL in name", kHead + "X\0Y: a\r\n\r\n"s, 400},
        {"non-token name", kHead + "X(Y): a\r\n\r\n", 400},
        // bare CR and bare LF: 400
        {"bare CR in request line", "GET /hello HTTP/1.1\rHost: a\r\n\r\n", 400},
        {"bare CR in value", kHead + "X: a\rb\r\n\r\n", 400},
        {"bare CR ending the head", kHead + "\r\r\n", 400},
        {"bare LF request", "GET /hello HTTP/1.1\nHost: a\n\n", 400},
        {"bare LF after a field", kHead + "X: a\n\r\n", 400},
        {"bare LF ending the head", kHead + "\n", 400},
        {"bare LF first", "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        // Host
        {"1.1 without Host", "GET /hello HTTP/1.1\r\n\r\n", 400},
        {"1.1 with two Hosts", kHead + "Host: b\r\n\r\n", 400},
        {"1.1 with two equal Hosts", kHead + "host: a\r\n\r\n", 400},
        {"1.0 with two Hosts", "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400},
        // Content-Length: strict digits
        {"CL +5", post("Content-Length: +5"), 400},
        {"CL -1", post("Content-Length: -1"), 400},
        {"CL 0x5", post("Content-Length: 0x5"), 400},
        {"CL empty", post("Content-Length:"), 400},
        {"CL 1 2", post("Content-Length: 1 2"), 400},
        {"CL abc", post("Content-Length: abc"), 400},
        {"CL 5a", post("Content-Length: 5a"), 400},
        {"CL list", post("Content-Length: 5, 5"), 400},
        {"CL overflow", post("Content-Length: 99999999999999999999"), 400},
        {"CL 2^64", post("Content-Length: 18446744073709551616"), 400},
        {"CL duplicated", post("Content-Length: 5\r\nContent-Length: 5"), 400},
        {"CL two values", post("Content-Length: 3\r\nContent-Length: 5"), 400},
        // 413: known from the head, before any body byte
        {"CL one past the limit", post("Content-Length: 1048577", ""), 413},
        {"CL 2 GB", post("Content-Length: 2000000000", ""), 413},
        {"CL 2^64-1", post("Content-Length: 18446744073709551615", ""), 413},
        // Transfer-Encoding: 501, and with Content-Length 400
        {"TE chunked", post("Transfer-Encoding: chunked", "0\r\n\r\n"), 501},
        {"TE gzip", post("Transfer-Encoding: gzip"), 501},
        {"TE identity", post("Transfer-Encoding: identity"), 501},
        {"TE chunked, identity", post("Transfer-Encoding: chunked, identity"), 501},
        {"TE chunked and a space", post("Transfer-Encoding: chunked "), 501},
        {"TE empty", post("Transfer-Encoding:"), 501},
        {"TE then CL", post("Transfer-Encoding: chunked\r\nContent-Length: 5"), 400},
        {"CL then TE", post("Content-Length: 5\r\nTransfer-Encoding: chunked"), 400},
        {"CL and TE identity", post("Content-Length: 5\r\nTransfer-Encoding: identity"),
         400},
        {"CL and TE, no Host",
         "POST / HTTP/1.1\r\nContent-Length: 1\r\n"
         "Transfer-Encoding: chunked\r\n\r\n",
         400},
        // limits, at the byte
        {"request line 8 KiB + 1", line_of(8193) + "\r\nHost: a\r\n\r\n", 414},
        {"endless request line", "GET /" + pad(8189), 414},
        {"8 KiB + 1 and CR", line_of(8193) + "\r", 414},
        {"header block 16 KiB + 1", "GET / HTTP/1.1\r\n" + block_of(16385), 431},
        {"endless field value", "GET / HTTP/1.1\r\nHost: a\r\nX: " + pad(16384), 431},
        {"endless head of short fields",
         "GET / HTTP/1.1\r\n" + std::string(16384, 'a').replace(0, 2, "a:"), 431},
        {"129 fields", many_fields(129), 431},
    };
    return table;
}

}  // namespace

TEST_CASE("every row: the answer for the whole input") {
    for (const Row& row : rows()) {
        CAPTURE(row.name);
        Request req;
        ParseResult r = parse_guarded(row.input, req);
        CHECK(outcome(r) == row.expect);
        if (row.expect == kComplete) {
            // The head ends at the first empty line; the body is not consumed.
            CHECK(r.bytes == row.input.find("\r\n\r\n") + 4);
        }
    }
}

TEST_CASE("every row: each prefix is partial or already the final answer") {
    // However the network splits the bytes, the server answers the same:
    // a prefix either waits for more or gives the whole input's answer.
    for (const Row& row : rows()) {
        CAPTURE(row.name);
        Request req;
        const int final_answer = outcome(parse_guarded(row.input, req));
        // A complete head is complete whatever part of its body has come.
        const std::size_t end =
            final_answer == kComplete ? row.input.find("\r\n\r\n") + 4 : row.input.size();
        const std::size_t step = end > 2048 ? 97 : 1;
        for (std::size_t n = 0; n < end; n += step) {
            CAPTURE(n);
            int got =
                outcome(parse_guarded(std::string_view(row.input).substr(0, n), req));
            if (final_answer == kComplete || final_answer == kPartial)
                CHECK(got == kPartial);
            else
                CHECK((got == kPartial || got == final_answer));
        }
    }
}

TEST_CASE("every row: fed a piece at a time with last_len, the same final answer") {
    // last_len lets the parser skip lines it has already seen; the answers
    // must not change because of it.
    for (const Row& row : rows()) {
        // Byte by byte costs O(n^2) copies into the guarded page: long rows
        // go in bigger pieces (the limits test below goes byte by byte).
        const bool long_row = row.input.size() > 2048;
        for (std::size_t piece : long_row ? std::vector<std::size_t>{97, 1000}
                                          : std::vector<std::size_t>{1, 7, 64}) {
            CAPTURE(row.name);
            CAPTURE(piece);
            Request req;
            const int final_answer = outcome(parse_guarded(row.input, req));
            std::size_t last_len = 0;
            int got = kPartial;
            for (std::size_t n = 0; n <= row.input.size() && got == kPartial;
                 n += piece) {
                std::string_view prefix = std::string_view(row.input).substr(0, n);
                got = outcome(parse_guarded(prefix, req, last_len));
                last_len = prefix.size();
            }
            if (got == kPartial) got = outcome(parse_guarded(row.input, req, last_len));
            CHECK(got == final_answer);
        }
    }
}

TEST_CASE("limits are answered without waiting for a line end") {
    struct Limit {
        std::string name;
        std::string prefix;  // then 'a' forever
        int status;
    };
    const Limit limits[] = {
        {"request line", "GET /", 414},
        {"field value", "GET / HTTP/1.1\r\nHost: a\r\nX: ", 431},
    };
    for (const Limit& limit : limits) {
        CAPTURE(limit.name);
        std::string input = limit.prefix;
        Request req;
        int got = kPartial;
        std::size_t last_len = 0;
        while (got == kPartial && input.size() < 64 * 1024) {
            input += 'a';
            got = outcome(parse_guarded(input, req, last_len));
            last_len = input.size();
        }
        CHECK(got == limit.status);
        CHECK(input.size() <= limit.prefix.size() + 16 * 1024 + 16);
    }
}

TEST_CASE("the fields of a complete head") {
    struct Expect {
        std::string input;
        const char* method;
        const char* path;
        const char* query;
        int minor;
        std::uint64_t length;
        bool keep_alive;
        std::size_t fields;
    };
    const Expect table[] = {
        {"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "/hello", "", 1, 0, true, 1},
        {"GET /work?ms=5&x=1 HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "/work", "ms=5&x=1", 1,
         0, true, 1},
        {"GET /? HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "/", "", 1, 0, true, 1},
        {"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: \t3 \t\r\n\r\nabc", "POST",
         "/echo", "", 1, 3, true, 2},
        {"POST /echo HTTP/1.1\r\nhOsT: a\r\ncontent-LENGTH: 3\r\n\r\nabc", "POST",
         "/echo", "", 1, 3, true, 2},
        {"GET /x HTTP/1.0\r\n\r\n", "GET", "/x", "", 0, 0, false, 0},
        {"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "GET", "/x", "", 0, 0, true,
         1},
        {"GET /x HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", "GET", "/x", "", 0, 0, true,
         1},
        {"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", "GET", "/x", "", 1, 0,
         false, 2},
        {"GET /x HTTP/1.1\r\nHost: a\r\nConnection: CLOSE\r\n\r\n", "GET", "/x", "", 1, 0,
         false, 2},
        {"GET /x HTTP/1.1\r\nHost: a\r\nConnection: foo, close\r\n\r\n", "GET", "/x", "",
         1, 0, false, 2},
        {"GET /x HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", "GET",
         "/x", "", 0, 0, false, 2},
        {"GET /x HTTP/1.0\r\nConnection: upgrade,keep-alive\r\n\r\n", "GET", "/x", "", 0,
         0, true, 1},
        {"GET http://h:80/p?q HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "/p", "q", 1, 0, true,
         1},
        {"GET HTTPS://h HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "/", "", 1, 0, true, 1},
        {"GET http://h?q=1 HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "/", "q=1", 1, 0, true,
         1},
        {"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", "OPTIONS", "*", "", 1, 0, true, 1},
    };
    for (const Expect& e : table) {
        CAPTURE(e.input);
        Request req;
        ParseResult r = parse_guarded(e.input, req);
        REQUIRE(r.state == ParseResult::complete);
        CHECK(req.method == e.method);
        CHECK(req.path == e.path);
        CHECK(req.query == e.query);
        CHECK(req.minor_version == e.minor);
        CHECK(req.content_length == e.length);
        CHECK(req.keep_alive == e.keep_alive);
        CHECK(req.fields().size() == e.fields);
    }
}

TEST_CASE("field views: names as sent, values trimmed, lookup ignores case") {
    std::string input =
        "GET / HTTP/1.1\r\nHost:  a.example \r\nX-Thing:\tv1 v2\t\r\nE:\r\n\r\n";
    Request req;
    REQUIRE(parse_guarded(input, req).state == ParseResult::complete);
    REQUIRE(req.fields().size() == 3);
    CHECK(req.fields()[0].name == "Host");
    CHECK(req.fields()[0].value == "a.example");
    CHECK(req.fields()[1].value == "v1 v2");
    CHECK(req.fields()[2].value == "");
    CHECK(req.header("x-thing") == "v1 v2");
    CHECK(req.header("HOST") == "a.example");
    CHECK_FALSE(req.header("missing").has_value());
    CHECK(req.target == "/");
}

TEST_CASE("a Request is reused: nothing of the last head leaks into the next") {
    Request req;
    REQUIRE(parse_guarded(post("Content-Length: 5"), req).state == ParseResult::complete);
    CHECK(req.content_length == 5);
    REQUIRE(parse_guarded("GET / HTTP/1.0\r\n\r\n", req).state == ParseResult::complete);
    CHECK(req.content_length == 0);
    CHECK(req.fields().empty());
    CHECK(req.minor_version == 0);
}

TEST_CASE("parse_decimal: digits only, 64 bits") {
    struct Case {
        const char* text;
        std::optional<std::uint64_t> value;
    };
    const Case table[] = {
        {"0", 0},
        {"7", 7},
        {"007", 7},
        {"18446744073709551615", 18446744073709551615u},
        {"18446744073709551616", std::nullopt},
        {"99999999999999999999", std::nullopt},
        {"", std::nullopt},
        {"+1", std::nullopt},
        {"-1", std::nullopt},
        {" 1", std::nullopt},
        {"1 ", std::nullopt},
        {"0x1", std::nullopt},
        {"1e3", std::nullopt},
    };
    for (const Case& c : table) {
        CAPTURE(c.text);
        CHECK(ladder::parse_decimal(c.text) == c.value);
    }
}

TEST_CASE("query_param: the first value of a key") {
    struct Case {
        const char* query;
        const char* key;
        std::optional<std::string_view> value;
    };
    const Case table[] = {
        {"ms=5", "ms", "5"},      {"a=1&ms=5", "ms", "5"}, {"ms=5&ms=6", "ms", "5"},
        {"ms=", "ms", ""},        {"ms", "ms", ""},        {"mss=5", "ms", std::nullopt},
        {"", "ms", std::nullopt}, {"&&ms=1&", "ms", "1"},  {"n=10", "ms", std::nullopt},
    };
    for (const Case& c : table) {
        CAPTURE(c.query);
        CHECK(ladder::query_param(c.query, c.key) == c.value);
    }
}

TEST_CASE("iequals") {
    CHECK(ladder::iequals("Content-Length", "content-length"));
    CHECK(ladder::iequals("", ""));
    CHECK_FALSE(ladder::iequals("Host", "Hosts"));
    CHECK_FALSE(ladder::iequals("Hast", "host"));
    CHECK_FALSE(ladder::iequals("-", "\r"));
}

// ---------------------------------------------------------------------------
// Issue 8: the README's bad-input choices, row by row (tests/steps/
// test_adversarial.py checks the same end to end). Append-only; a row found
// by tests/fuzz names its corpus file.

TEST_CASE("issue 8: the kit's choices where RFC 9112 leaves one") {
    const Row table[] = {
        {"CL with a tab around it", post("Content-Length:\t5\t"), kComplete},
        {"CL fullwidth digit", post("Content-Length: \xef\xbc\x95"), 400},
        {"CL with an underscore", post("Content-Length: 1_0"), 400},
        {"CL exponent", post("Content-Length: 1e3"), 400},
        {"CL 0 twice", post("Content-Length: 0\r\nContent-Length: 0", ""), 400},
        {"CL 0 and TE", post("Content-Length: 0\r\nTransfer-Encoding: chunked", ""), 400},
        {"TE capitalised", post("Transfer-Encoding: Chunked"), 501},
        {"TE twice", post("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked"), 501},
        {"TE in HTTP/1.0", "POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 501},
        {"raw UTF-8 in target", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"UTF-8 in a name", kHead + "Caf\xc3\xa9: v\r\n\r\n", 400},
        {"ESC in a value", kHead + "X: \x1b[31m\r\n\r\n", 400},
        {"LF CR", "GET / HTTP/1.1\n\rHost: a\r\n\r\n", 400},
        {"CR CR LF", "GET / HTTP/1.1\r\r\nHost: a\r\n\r\n", 400},
        {"obs-fold as the first field", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400},
        {"absolute-form without Host", "GET http://a/hello HTTP/1.1\r\n\r\n", 400},
        {"absolute-form, another Host", "GET http://b/ HTTP/1.1\r\nHost: a\r\n\r\n",
         kComplete},
        {"HTTP/9.9", "GET / HTTP/9.9\r\nHost: a\r\n\r\n", 505},
        {"NUL after the version", "GET / HTTP/1.1\0\r\nHost: a\r\n\r\n"s, 400},
        {"every tchar in a name", kHead + "!#$%&'*+-.^_`|~09aZ: v\r\n\r\n", kComplete},
    };
    for (const Row& row : table) {
        CAPTURE(row.name);
        Request req;
        const int final_answer = outcome(parse_guarded(row.input, req));
        CHECK(final_answer == row.expect);
        // However the network splits it: partial, or already this answer.
        const std::size_t end = final_answer == kComplete ? row.input.find("\r\n\r\n") + 4
                                                          : row.input.size();
        std::size_t last_len = 0;
        for (std::size_t n = 0; n < end; ++n) {
            CAPTURE(n);
            std::string_view prefix = std::string_view(row.input).substr(0, n);
            int got = outcome(parse_guarded(prefix, req, last_len));
            CHECK((got == kPartial || (got == final_answer && final_answer != kComplete)));
            last_len = got == kPartial ? n : 0;
        }
    }
}

// test_session.cpp — Session: echo, and HTTP over the parser: pipelining,
// fragmentation, keep-alive, closing errors, backpressure, the offload hook,
// and what a stop changes (Connection: close; 503 past kDrainTime).
//
// The tests play the event loop: append bytes to input(), call process(),
// and take output() as a write would.
//
// The stop is process-wide: a case that requests one forgets it at its end
// (StopForThisCase). One case waits out kDrainTime (about 2 s): the stop's
// clock is the real one.
#include "session.h"

#include "protocol_limits.h"
#include "signals.h"

#include <doctest/doctest.h>

#include <chrono>
#include <cstring>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

using namespace std::string_literals;
using ladder::Mode;
using ladder::Session;
using ladder::SlowJob;
using ladder::Stats;

namespace {

constexpr std::string_view kHello = "Hello, World!\n";

std::string get(std::string_view target, std::string_view fields = "") {
    return "GET "s + std::string(target) + " HTTP/1.1\r\nHost: t\r\n" +
           std::string(fields) + "\r\n";
}

std::string post(std::string_view target, std::string_view body) {
    return "POST "s + std::string(target) +
           " HTTP/1.1\r\nHost: t\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\n\r\n" + std::string(body);
}

// Everything output() holds, consumed as a write would.
std::string take(Session& s) {
    std::string out(s.output().readable());
    s.output().consume(out.size());
    return out;
}

std::string feed(Session& s, std::string_view bytes) {
    s.input().append(bytes);
    s.process();
    return take(s);
}

// Feeds `bytes` cut at the given sizes (cycled), writing out after each piece.
std::string feed_in_pieces(Session& s, std::string_view bytes,
                           const std::vector<std::size_t>& sizes) {
    std::string out;
    for (std::size_t at = 0, i = 0; at < bytes.size(); ++i) {
        std::size_t n = std::min(sizes[i % sizes.size()], bytes.size() - at);
        out += feed(s, bytes.substr(at, n));
        at += n;
    }
    return out;
}

struct Response {
    int status = 0;
    std::string head;  // status line and fields
    std::string body;

    std::optional<std::string> field(std::string_view name) const {
        std::size_t at = head.find("\r\n"s + std::string(name) + ": ");
        if (at == std::string::npos) return std::nullopt;
        at += name.size() + 4;
        return head.substr(at, head.find("\r\n", at) - at);
    }
};

// Splits output into responses by their Content-Length (every response has
// one; HEAD answers are not split here).
std::vector<Response> responses(std::string_view out) {
    std::vector<Response> all;
    while (!out.empty()) {
        std::size_t end = out.find("\r\n\r\n");
        REQUIRE(end != std::string_view::npos);
        REQUIRE(out.starts_with("HTTP/1.1 "));
        Response r;
        r.head = out.substr(0, end);
        r.status = std::stoi(r.head.substr(9, 3));
        std::optional<std::string> length = r.field("Content-Length");
        REQUIRE(length.has_value());
        std::size_t n = std::stoul(*length);
        REQUIRE(out.size() >= end + 4 + n);
        r.body = out.substr(end + 4, n);
        all.push_back(std::move(r));
        out.remove_prefix(end + 4 + n);
    }
    return all;
}

// A stop, requested now and forgotten when the case ends.
struct StopForThisCase {
    StopForThisCase() {
        REQUIRE_FALSE(ladder::stop_requested());
        ladder::request_stop();
    }
    ~StopForThisCase() { ladder::forget_stop_for_testing(); }
    StopForThisCase(const StopForThisCase&) = delete;
    StopForThisCase& operator=(const StopForThisCase&) = delete;
};

// A stream of valid requests of every kind (no /stats: its body depends on
// when it is answered).
std::string mixed_stream() {
    std::string s;
    for (int i = 0; i < 4; ++i) {
        s += get("/hello") + post("/echo", "body " + std::to_string(i) + "\r\n\r\n");
        s += get("/cpu?n=" + std::to_string(i * 100)) + get("/work?ms=0");
        s += get("/nope") + post("/hello", "GET /nope HTTP/1.1\r\n\r\n") + get("/");
        s += "\r\n" + get("/work?ms=x");  // one leading CRLF is skipped
        s += "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
        s += post("/echo", std::string(3000 + i, static_cast<char>('a' + i)));
    }
    return s;
}

}  // namespace

TEST_CASE("the exact bytes of GET /hello") {
    Stats stats("00", "http");
    Session s(Mode::http, stats);
    CHECK(feed(s, get("/hello")) ==
          "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\n"
          "Hello, World!\n");
}

TEST_CASE("pipelined requests in one read are answered in order") {
    Stats stats("00", "http");
    Session s(Mode::http, stats);
    std::string in = get("/hello") + post("/echo", "abc") + get("/nope") +
                     post("/hello", "GET /nope HTTP/1.1\r\n\r\n") + get("/cpu?n=10") +
                     get("/work?ms=0") + get("/") + post("/echo", "");
    std::vector<Response> got = responses(feed(s, in));
    struct Expect {
        int status;
        std::string body;
    };
    const Expect want[] = {{200, "Hello, World!\n"},
                           {200, "abc"},
                           {404, "Not Found\n"},
                           {405, "Method Not Allowed\n"},
                           {200, ladder::run_slow_job({SlowJob::cpu, 10})},
                           {200, "worked 0 ms\n"},
                           {200, "Hello, World!\n"},
                           {200, ""}};
    REQUIRE(got.size() == std::size(want));
    for (std::size_t i = 0; i < got.size(); ++i) {
        CAPTURE(i);
        CHECK(got[i].status == want[i].status);
        CHECK(got[i].body == want[i].body);
        CHECK_FALSE(got[i].field("Connection").has_value());
    }
    CHECK(got[1].field("Content-Type") == "application/octet-stream");
    CHECK(got[3].field("Allow") == "GET, HEAD");
    CHECK(s.want().read);
    CHECK_FALSE(s.done());
    CHECK_FALSE(s.mid_request());
}

TEST_CASE("however the bytes are split, the output is the same") {
    for (const std::string& tail : {""s, "GARBAGE\r\n\r\n" + get("/hello"),
                                    get("/hello", "Connection: close\r\n") + get("/")}) {
        const std::string in = mixed_stream() + tail;
        Stats one_stats("00", "http");
        Session one(Mode::http, one_stats);
        const std::string expected = feed(one, in);
        CHECK(responses(expected).size() == 40 + (tail.empty() ? 0 : 1));

        Stats bytewise_stats("00", "http");
        Session bytewise(Mode::http, bytewise_stats);
        CHECK(feed_in_pieces(bytewise, in, {1}) == expected);

        for (unsigned seed = 1; seed <= 20; ++seed) {
            CAPTURE(seed);
            std::mt19937 rng(seed);
            std::uniform_int_distribution<std::size_t> size(1, 700);
            std::vector<std::size_t> sizes(64);
            for (std::size_t& n : sizes) n = size(rng);
            Stats stats("00", "http");
            Session s(Mode::http, stats);
            CHECK(feed_in_pieces(s, in, sizes) == expected);
            CHECK(stats.counters().bytes_in == in.size());
            CHECK(stats.counters().bytes_out == expected.size());
        }
    }
}

TEST_CASE("keep-alive: HTTP/1.1 stays open unless told, HTTP/1.0 closes unless asked") {
    struct Row {
        std::string request;
        std::optional<std::string> connection;  // the response's Connection field
        bool closes;
    };
    const Row table[] = {
        {get("/hello"), std::nullopt, false},
        {get("/hello", "Connection: close\r\n"), "close", true},
        {get("/hello", "Connection: Close\r\n"), "close", true},
        {get("/hello", "Connection: CLOSE\r\n"), "close", true},
        {get("/nope", "Connection: close\r\n"), "close", true},
        {"GET /hello HTTP/1.0\r\n\r\n", "close", true},
        {"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "keep-alive", false},
        {"POST /echo HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx",
         "keep-alive", false},
    };
    for (const Row& row : table) {
        CAPTURE(row.request);
        Stats stats("00", "http");
        Session s(Mode::http, stats);
        std::vector<Response> got = responses(feed(s, row.request + get("/hello")));
        REQUIRE(got.size() == (row.closes ? 1 : 2));
        CHECK(got[0].field("Connection") == row.connection);
        CHECK(s.done() == row.closes);
        CHECK(s.want().read == !row.closes);
        // Bytes that arrive after a closing answer are never answered.
        CHECK(feed(s, get("/hello")).empty() == row.closes);
    }
}

TEST_CASE("a rejected request is answered, then the connection closes") {
    struct Row {
        std::string request;
        int status;
    };
    const Row table[] = {
        {"GARBAGE\r\n\r\n", 400},
        {"GET /hello HTTP/1.1\r\n\r\n", 400},
        {"GET /hello HTTP/1.1\nHost: a\n\n", 400},
        {"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400},
        {"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: "
         "5\r\n\r\n",
         400},
        {"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400},
        {"GET /" + std::string(9000, 'a') + " HTTP/1.1\r\nHost: a\r\n\r\n", 414},
        {"GET /" + std::string(9000, 'a'), 414},
        {"GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(17000, 'b') + "\r\n\r\n", 431},
        {"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1048577\r\n\r\n", 413},
        {"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 501},
        {"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
    };
    for (const Row& row : table) {
        CAPTURE(row.status);
        Stats stats("00", "http");
        Session s(Mode::http, stats);
        s.input().append(row.request + get("/hello") + get("/hello"));
        s.process();
        CHECK_FALSE(s.want().read);
        CHECK(s.want().write);
        CHECK_FALSE(s.done());  // not before the answer is out
        std::vector<Response> got = responses(take(s));
        REQUIRE(got.size() == 1);
        CHECK(got[0].status == row.status);
        CHECK(got[0].field("Connection") == "close");
        CHECK(s.done());
        CHECK_FALSE(s.mid_request());
        CHECK(feed(s, get("/hello")).empty());
        CHECK(stats.counters().requests == 1);
    }
}

TEST_CASE("413 is sent on the head alone, without waiting for the body") {
    Stats stats("00", "http");
    Session s(Mode::http, stats);
    auto got = responses(
        feed(s, "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000000\r\n\r\n"));
    REQUIRE(got.size() == 1);
    CHECK(got[0].status == 413);
    CHECK(s.done());
}

TEST_CASE("route errors keep the connection; the request's body is skipped") {
    Stats stats("00", "http");
    Session s(Mode::http, stats);
    std::string in =
        get("/work?ms=10001") + get("/work?ms=-1") + get("/work") + get("/cpu?n=abc") +
        get("/cpu?n=" + std::to_string(ladder::kMaxCpuRounds + 1)) +
        post("/work?ms=1", "xyz") + "HEAD /cpu?n=1 HTTP/1.1\r\nHost: a\r\n\r\n" +
        "DELETE / HTTP/1.1\r\nHost: a\r\n\r\n" + "get / HTTP/1.1\r\nHost: a\r\n\r\n" +
        "BREW /pot HTTP/1.1\r\nHost: a\r\n\r\n" + get("/hello");
    std::string out = feed(s, in);
    // HEAD answers carry no body: split around the one in the middle.
    std::size_t head_answer = out.find("HTTP/1.1 405", out.find("HTTP/1.1 405") + 1);
    std::vector<Response> got = responses(std::string_view(out).substr(0, head_answer));
    const int want[] = {400, 400, 400, 400, 400, 405};
    REQUIRE(got.size() == std::size(want));
    for (std::size_t i = 0; i < got.size(); ++i) CHECK(got[i].status == want[i]);
    CHECK(got[5].field("Allow") == "GET");
    std::string_view rest = std::string_view(out).substr(head_answer);
    std::string_view head_405 = rest.substr(0, rest.find("\r\n\r\n") + 4);
    CHECK(head_405.find("Allow: GET\r\n") != std::string_view::npos);
    got = responses(rest.substr(head_405.size()));
    REQUIRE(got.size() == 4);
    CHECK(got[0].status == 405);  // DELETE /
    CHECK(got[1].status == 405);  // methods are case-sensitive
    CHECK(got[2].status == 404);  // an unknown method on an unknown path
    CHECK(got[3].body == kHello);
    CHECK_FALSE(s.done());
}

TEST_CASE("HEAD: the GET answer's fields, no body") {
    Stats stats("00", "http");
    Session s(Mode::http, stats);
    CHECK(feed(s, "HEAD /hello HTTP/1.1\r\nHost: a\r\n\r\n") ==
          "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\n");
    CHECK(feed(s, "HEAD /nope HTTP/1.1\r\nHost: a\r\n\r\n") ==
          "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: "
          "10\r\n\r\n");
}

TEST_CASE("GET /stats: the stats JSON") {
    Stats stats("00", "http");
    Session s(Mode::http, stats);
    std::vector<Response> got = responses(feed(s, get("/hello") + get("/stats")));
    REQUIRE(got.size() == 2);
    CHECK(got[1].status == 200);
    CHECK(got[1].field("Content-Type") == "application/json");
    CHECK(got[1].body.starts_with("{"));
    CHECK(got[1].body.find("\"requests\":1") != std::string::npos);
}

TEST_CASE("stats: requests, bytes in and bytes out") {
    Stats stats("00", "http");
    Session s(Mode::http, stats);
    std::string in = get("/hello") + post("/echo", "12345") + get("/nope");
    std::string out = feed_in_pieces(s, in, {3, 10});
    CHECK(stats.counters().requests == 3);
    CHECK(stats.counters().bytes_in == in.size());
    CHECK(stats.counters().bytes_out == out.size());
}

TEST_CASE("count_requests_in: a worker's own count beside the total") {
    Stats stats("07", "http", 2);
    Session http(Mode::http, stats), echo(Mode::echo, stats);
    http.count_requests_in(&stats.worker(1).requests);
    echo.count_requests_in(&stats.worker(1).requests);
    feed(http, get("/hello") + get("/nope"));
    feed(echo, "abc");
    CHECK(stats.worker(1).requests == 3);
    CHECK(stats.worker(0).requests == 0);
    CHECK(stats.counters().requests == 3);
}

TEST_CASE("mid_request: between requests or inside one") {
    Stats stats("00", "http");
    Session s(Mode::http, stats);
    CHECK_FALSE(s.mid_request());
    CHECK(feed(s, "GET /hel").empty());
    CHECK(s.mid_request());
    CHECK(responses(feed(s, "lo HTTP/1.1\r\nHost: a\r\n\r\n")).size() == 1);
    CHECK_FALSE(s.mid_request());
    CHECK(
        feed(s, "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab").empty());
    CHECK(s.mid_request());
    CHECK(responses(feed(s, "cd"))[0].body == "abcd");
    CHECK_FALSE(s.mid_request());
}

TEST_CASE("the peer's EOF: complete requests are answered, a partial one dropped") {
    Stats stats("00", "http");
    Session s(Mode::http, stats);
    s.input().append(get("/hello") + get("/") + "GET /hel");
    s.on_eof();
    CHECK_FALSE(s.want().read);
    CHECK_FALSE(s.done());
    CHECK(responses(take(s)).size() == 2);
    CHECK(s.done());
}

TEST_CASE("high-water mark: a client that does not read is not read either") {
    Stats stats("00", "http");
    Session s(Mode::http, stats);
    std::string in;
    for (int i = 0; i < 40; ++i)
        in += post("/echo", std::string(64 * 1024, char('A' + i % 26)));
    s.input().append(in);
    s.process();
    CHECK(s.output().size() > ladder::kOutputHighWater);
    CHECK(s.output().size() < ladder::kOutputHighWater + 65 * 1024);
    CHECK_FALSE(s.want().read);
    CHECK(s.want().write);
    CHECK(s.mid_request());
    // More bytes in (a blocking step reads anyway) change nothing until
    // the output drains.
    std::size_t before = s.output().size();
    s.input().append(get("/hello"));
    s.process();
    CHECK(s.output().size() == before);
    std::string out;
    for (int writes = 0; writes < 100 && !s.output().empty(); ++writes) {
        out += take(s);
        s.process();
    }
    std::vector<Response> got = responses(out);
    REQUIRE(got.size() == 41);
    for (int i = 0; i < 40; ++i) {
        CAPTURE(i);
        CHECK(got[i].body == std::string(64 * 1024, char('A' + i % 26)));
    }
    CHECK(got[40].body == kHello);
    CHECK(s.want().read);
}

TEST_CASE("echo: every byte back in order; EOF flushes, then done") {
    Stats stats("00", "echo");
    Session s(Mode::echo, stats);
    CHECK(feed(s, "hello") == "hello");
    s.input().append("ab");
    s.process();
    s.input().append("c\0d"s);
    s.process();
    CHECK(take(s) == "abc\0d"s);
    CHECK(s.want().read);
    s.input().append("tail");
    s.on_eof();
    CHECK_FALSE(s.want().read);
    CHECK_FALSE(s.done());
    CHECK(take(s) == "tail");
    CHECK(s.done());
    CHECK(stats.counters().requests == 4);
    CHECK(stats.counters().bytes_in == 14);
    CHECK(stats.counters().bytes_out == 14);
}

TEST_CASE("echo: the high-water mark stops the copying") {
    Stats stats("00", "echo");
    Session s(Mode::echo, stats);
    std::string big(ladder::kOutputHighWater + 1, 'x');
    s.input().append(big);
    s.process();
    CHECK_FALSE(s.want().read);
    s.input().append("y");
    s.process();
    CHECK(s.output().size() == big.size());
    CHECK(take(s) == big);
    s.process();
    CHECK(take(s) == "y");
    CHECK(s.want().read);
}

std::string frame(std::string_view payload) {
    auto n = static_cast<std::uint32_t>(payload.size());
    std::string out{char(n >> 24), char(n >> 16 & 0xff), char(n >> 8 & 0xff), char(n & 0xff)};
    return out + std::string(payload);
}

TEST_CASE("frame: messages back one by one, whatever the reads") {
    Stats stats("00", "frame");
    Session s(Mode::frame, stats);
    std::string two = frame("hello") + frame("") + frame(std::string(300, 'z'));
    CHECK(feed(s, two) == two);  // three frames in one read: all three back
    CHECK(stats.counters().requests == 3);
    std::string one = frame("split across reads");
    for (std::size_t i = 0; i + 1 < one.size(); ++i) {  // a byte at a time: no answer yet
        s.input().append(one.substr(i, 1));
        s.process();
        CHECK(s.output().empty());
    }
    CHECK(feed(s, one.substr(one.size() - 1)) == one);
    CHECK(stats.counters().requests == 4);
    CHECK(s.want().read);
}

TEST_CASE("frame: a length past kMaxFrame closes; half a frame at EOF is dropped") {
    Stats stats("00", "frame");
    Session big(Mode::frame, stats);
    std::string too_long = frame("x");
    too_long[0] = char(0x7f);  // 2 GiB announced
    CHECK(feed(big, frame("ok") + too_long) == frame("ok"));
    CHECK(big.done());
    CHECK_FALSE(big.want().read);

    Session half(Mode::frame, stats);
    half.input().append(frame("whole") + frame("half").substr(0, 6));
    half.on_eof();
    CHECK(take(half) == frame("whole"));
    CHECK(half.done());
}

TEST_CASE("frame: the high-water mark stops the answers, and they resume") {
    Stats stats("00", "frame");
    Session s(Mode::frame, stats);
    std::string chunk = frame(std::string(64 * 1024, 'f'));
    std::string all;
    for (int i = 0; i < 8; ++i) all += chunk;  // 512 KiB of frames: past the mark
    s.input().append(all);
    s.process();
    CHECK(s.output().size() < all.size());
    CHECK_FALSE(s.want().read);
    std::string got = take(s);
    while (s.held_back() || !s.output().empty()) {
        s.process();
        got += take(s);
    }
    CHECK(got == all);
}

TEST_CASE("abort: nothing more is sent") {
    Stats stats("00", "http");
    Session s(Mode::http, stats);
    s.input().append(get("/hello") + "GET /");
    s.process();
    s.abort();
    CHECK(s.done());
    CHECK(s.output().empty());
    CHECK_FALSE(s.want().read);
    CHECK_FALSE(s.want().write);
}

TEST_CASE("offload: a refused job is a 503 with Retry-After; the connection stays") {
    Stats stats("00", "http");
    Session s(Mode::http, stats);
    s.set_offload([](const SlowJob&) { return false; });
    std::vector<Response> got = responses(feed(s, get("/work?ms=5") + get("/hello")));
    REQUIRE(got.size() == 2);
    CHECK(got[0].status == 503);
    CHECK(got[0].field("Retry-After") == "1");
    CHECK(got[1].body == kHello);
    CHECK(s.want().read);
}

TEST_CASE("offload: answers wait for the job and stay in order") {
    Stats stats("00", "http");
    Session s(Mode::http, stats);
    std::vector<SlowJob> jobs;
    s.set_offload([&](const SlowJob& job) {
        jobs.push_back(job);
        return true;
    });
    CHECK(
        feed(s, get("/work?ms=7") + get("/cpu?n=3") + get("/hello") + "GET /x").empty());
    REQUIRE(jobs.size() == 1);
    CHECK(jobs[0].kind == SlowJob::work);
    CHECK(jobs[0].arg == 7);
    CHECK_FALSE(s.want().read);  // nothing more is taken in while a job is out
    CHECK(s.mid_request());
    CHECK_FALSE(s.done());

    s.complete(ladder::run_slow_job(jobs[0]));  // answers, then goes on to the /cpu job
    std::vector<Response> got = responses(take(s));
    REQUIRE(got.size() == 1);
    CHECK(got[0].body == "worked 7 ms\n");
    REQUIRE(jobs.size() == 2);
    CHECK(jobs[1].kind == SlowJob::cpu);
    CHECK(jobs[1].arg == 3);

    s.complete(ladder::run_slow_job(jobs[1]));
    got = responses(take(s));
    REQUIRE(got.size() == 2);
    CHECK(got[0].body == ladder::run_slow_job({SlowJob::cpu, 3}));
    CHECK(got[1].body == kHello);
    CHECK(s.want().read);
    CHECK(s.mid_request());  // "GET /x" has begun
    CHECK(stats.counters().requests == 3);
}

TEST_CASE("offload: the job's request decides how the connection goes on") {
    struct Row {
        std::string request;
        std::optional<std::string> connection;
        bool closes;
    };
    const Row table[] = {
        {get("/work?ms=1"), std::nullopt, false},
        {get("/work?ms=1", "Connection: close\r\n"), "close", true},
        {"GET /work?ms=1 HTTP/1.0\r\n\r\n", "close", true},
        {"GET /work?ms=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "keep-alive",
         false},
    };
    for (const Row& row : table) {
        CAPTURE(row.request);
        Stats stats("00", "http");
        Session s(Mode::http, stats);
        s.set_offload([](const SlowJob&) { return true; });
        CHECK(feed(s, row.request + get("/hello")).empty());
        s.complete("done\n");
        std::vector<Response> got = responses(take(s));
        REQUIRE(got.size() == (row.closes ? 1 : 2));
        CHECK(got[0].field("Connection") == row.connection);
        CHECK(s.done() == row.closes);
    }
}

TEST_CASE("offload: the peer's EOF while a job is out") {
    Stats stats("00", "http");
    Session s(Mode::http, stats);
    s.set_offload([](const SlowJob&) { return true; });
    s.input().append(get("/work?ms=1") + get("/hello"));
    s.on_eof();
    CHECK(s.output().empty());
    CHECK_FALSE(s.done());  // the job's answer is still owed
    s.complete("done\n");
    CHECK(responses(take(s)).size() == 2);
    CHECK(s.done());
}

TEST_CASE("run_slow_job") {
    std::string a = ladder::run_slow_job({SlowJob::cpu, 1000});
    CHECK(a.size() == 17);
    CHECK(a.back() == '\n');
    CHECK(a.find_first_not_of("0123456789abcdef") == 16);
    CHECK(a == ladder::run_slow_job({SlowJob::cpu, 1000}));
    CHECK(a != ladder::run_slow_job({SlowJob::cpu, 1001}));
    CHECK(ladder::run_slow_job({SlowJob::cpu, 0}).size() == 17);

    auto start = std::chrono::steady_clock::now();
    CHECK(ladder::run_slow_job({SlowJob::work, 20}) == "worked 20 ms\n");
    CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(20));
}

TEST_CASE("the read loop of session.h: writable(kReadSize), read, commit(n)") {
    // A body several reads long, delivered the way a step's read() does.
    const std::string body(3 * ladder::kReadSize + 1234, 'r');
    const std::string stream = post("/echo", body) + get("/hello");
    Stats stats("00", "http");
    Session s(Mode::http, stats);
    std::string out;
    int reads = 0;
    for (std::size_t at = 0; at < stream.size(); ++reads) {
        std::span<char> room = s.input().writable(ladder::kReadSize);
        REQUIRE(room.size() >= ladder::kReadSize);
        std::size_t n = std::min(ladder::kReadSize, stream.size() - at);
        std::memcpy(room.data(), stream.data() + at, n);  // read(fd, room.data(), kReadSize)
        s.input().commit(n);
        at += n;
        s.process();
        out += take(s);
    }
    CHECK(reads == 4);
    std::vector<Response> got = responses(out);
    REQUIRE(got.size() == 2);
    CHECK(got[0].body == body);
    CHECK(got[1].body == kHello);
    CHECK(stats.counters().bytes_in == stream.size());
}

TEST_CASE("held_back: answers owed once the output below the high-water mark is sent") {
    const std::string big(ladder::kOutputHighWater + 1, 'b');
    struct Row {
        const char* what;
        Mode mode;
        std::string input;
        bool held_back;
    };
    const Row rows[] = {
        {"http: a big answer, a request behind it", Mode::http,
         post("/echo", big) + get("/hello"), true},
        {"echo: big, then more", Mode::echo, big, true},  // more is appended below
        {"http: a big answer alone", Mode::http, post("/echo", big), false},
        {"echo: big alone", Mode::echo, big, false},
        {"http: the big answer closes: nothing more is owed", Mode::http,
         "POST /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: " +
             std::to_string(big.size()) + "\r\n\r\n" + big + get("/hello"),
         false},
    };
    for (const Row& row : rows) {
        std::string what = row.what;
        CAPTURE(what);
        Stats stats("00", row.mode == Mode::http ? "http" : "echo");
        Session s(row.mode, stats);
        CHECK_FALSE(s.held_back());
        s.input().append(row.input);
        s.process();
        if (row.mode == Mode::echo && row.held_back) {
            s.input().append("more");  // a blocking step reads anyway
            s.process();
        }
        CHECK(s.output().size() > ladder::kOutputHighWater);
        CHECK(s.held_back() == row.held_back);
        take(s);  // one write takes it all ...
        CHECK(s.held_back() == row.held_back);
        CHECK(s.want().write == row.held_back);  // ... and a loop must come back at once
        s.process();
        CHECK_FALSE(s.held_back());
        CHECK(take(s).empty() == !row.held_back);
    }

    // abort() owes nothing.
    Stats stats("00", "http");
    Session s(Mode::http, stats);
    s.input().append(post("/echo", big) + get("/hello"));
    s.process();
    REQUIRE(s.held_back());
    s.abort();
    CHECK_FALSE(s.held_back());
    CHECK_FALSE(s.want().write);
}

TEST_CASE("waiting_for_job: true exactly while a SlowJob is out with the offload hook") {
    Stats stats("00", "http");
    Session inline_jobs(Mode::http, stats);
    feed(inline_jobs, get("/work?ms=0"));
    CHECK_FALSE(inline_jobs.waiting_for_job());  // no hook: run here

    Session full(Mode::http, stats);
    full.set_offload([](const SlowJob&) { return false; });
    feed(full, get("/work?ms=0"));
    CHECK_FALSE(full.waiting_for_job());  // refused: answered 503 at once

    Session s(Mode::http, stats);
    int jobs = 0;
    s.set_offload([&](const SlowJob&) {
        ++jobs;
        return true;
    });
    CHECK_FALSE(s.waiting_for_job());
    CHECK(feed(s, get("/hello")).size() > 0);
    CHECK_FALSE(s.waiting_for_job());
    CHECK(feed(s, get("/work?ms=1") + get("/cpu?n=1") + get("/work?ms=2")).empty());
    CHECK(s.waiting_for_job());
    s.complete("one\n");
    CHECK(s.waiting_for_job());  // the next job, queued behind, went out
    CHECK(jobs == 2);
    s.complete_refused();
    CHECK_FALSE(s.waiting_for_job());  // and the connection closes: the third never goes
    CHECK(jobs == 2);
}

TEST_CASE("complete_refused: 503 with Retry-After, Connection: close; nothing after it") {
    struct Row {
        std::string request;
    };
    const Row rows[] = {
        {get("/work?ms=1")},
        {get("/cpu?n=5")},
        {"GET /work?ms=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"},
    };
    for (const Row& row : rows) {
        CAPTURE(row.request);
        Stats stats("09", "http");
        Session s(Mode::http, stats);
        s.set_offload([](const SlowJob&) { return true; });
        CHECK(feed(s, row.request + get("/hello")).empty());
        REQUIRE(s.waiting_for_job());
        s.complete_refused();
        CHECK_FALSE(s.want().read);
        std::vector<Response> got = responses(take(s));
        REQUIRE(got.size() == 1);  // the /hello behind it is not answered
        CHECK(got[0].status == 503);
        CHECK(got[0].body == "Service Unavailable\n");
        CHECK(got[0].field("Retry-After") == "1");
        CHECK(got[0].field("Connection") == "close");
        CHECK(s.done());
        CHECK(feed(s, get("/hello")).empty());
        CHECK(stats.counters().requests == 1);
    }

    // The peer gone meanwhile: there is nobody to tell.
    Stats stats("09", "http");
    Session s(Mode::http, stats);
    s.set_offload([](const SlowJob&) { return true; });
    feed(s, get("/work?ms=1"));
    s.abort();
    s.complete_refused();
    CHECK(s.output().empty());
    CHECK(s.done());
    CHECK_FALSE(s.waiting_for_job());
}

TEST_CASE("during a stop every answer says Connection: close, and the session closes") {
    struct Row {
        std::string request;
        int status;
        bool offload_full = false;  // the offload hook refuses: 503
    };
    const Row rows[] = {
        {get("/hello"), 200},
        {"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 200},
        {get("/hello", "Connection: close\r\n"), 200},
        {post("/echo", "abc"), 200},
        {get("/work?ms=0"), 200},
        {get("/nope"), 404},
        {post("/hello", ""), 405},
        {get("/work?ms=x"), 400},
        {get("/work?ms=1"), 503, true},
        {"GARBAGE\r\n\r\n", 400},
    };
    StopForThisCase stop;
    for (const Row& row : rows) {
        CAPTURE(row.request);
        Stats stats("00", "http");
        Session s(Mode::http, stats);
        if (row.offload_full) s.set_offload([](const SlowJob&) { return false; });
        s.input().append(row.request + get("/hello"));
        s.process();
        CHECK_FALSE(s.want().read);
        CHECK_FALSE(s.mid_request());  // the /hello behind it will never be answered
        std::vector<Response> got = responses(take(s));
        REQUIRE(got.size() == 1);
        CHECK(got[0].status == row.status);
        CHECK(got[0].field("Connection") == "close");
        CHECK(s.done());
        CHECK(feed(s, get("/hello")).empty());
    }

    // HEAD: the fields only, Connection: close among them.
    Stats stats("00", "http");
    Session s(Mode::http, stats);
    CHECK(feed(s, "HEAD /hello HTTP/1.1\r\nHost: a\r\n\r\n") ==
          "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n"
          "Connection: close\r\n\r\n");
    CHECK(s.done());
}

TEST_CASE("a stop between requests: answers before it kept the connection, the next closes") {
    Stats stats("00", "http");
    Session s(Mode::http, stats);
    std::vector<Response> before = responses(feed(s, get("/hello") + get("/")));
    REQUIRE(before.size() == 2);
    CHECK_FALSE(before[1].field("Connection").has_value());
    CHECK(s.want().read);

    StopForThisCase stop;
    std::vector<Response> after = responses(feed(s, get("/hello") + get("/")));
    REQUIRE(after.size() == 1);
    CHECK(after[0].body == kHello);
    CHECK(after[0].field("Connection") == "close");
    CHECK(s.done());
}

TEST_CASE("a stop while a job is out: its answer is the last, what was queued behind is not") {
    Stats stats("09", "http");
    Session s(Mode::http, stats);
    s.set_offload([](const SlowJob&) { return true; });
    CHECK(feed(s, get("/work?ms=1") + get("/hello")).empty());
    StopForThisCase stop;
    s.complete("worked 1 ms\n");
    std::vector<Response> got = responses(take(s));
    REQUIRE(got.size() == 1);
    CHECK(got[0].status == 200);
    CHECK(got[0].body == "worked 1 ms\n");
    CHECK(got[0].field("Connection") == "close");
    CHECK(s.done());
    CHECK_FALSE(s.waiting_for_job());
}

TEST_CASE("echo has no answers to mark: a stop leaves its bytes flowing") {
    // Nothing in echo says "last": the loop's drain closes it once it is quiet.
    StopForThisCase stop;
    Stats stats("00", "echo");
    Session s(Mode::echo, stats);
    CHECK(feed(s, "ping") == "ping");
    CHECK(s.want().read);
    CHECK_FALSE(s.done());
}

TEST_CASE("past kDrainTime: a request is answered 503 with Connection: close, not served") {
    Stats stats("00", "http");
    // A job taken before the drain time was over is still answered.
    Session early(Mode::http, stats);
    early.set_offload([](const SlowJob&) { return true; });
    CHECK(feed(early, get("/work?ms=1") + get("/hello")).empty());

    StopForThisCase stop;
    const auto stopped = ladder::give_up_at() - ladder::kGiveUpTime;
    // The one wait of the unit tests: the stop's clock is the real one.
    std::this_thread::sleep_until(stopped + ladder::kDrainTime + std::chrono::milliseconds(50));
    REQUIRE(ladder::drain_over());
    bool given_up = ladder::drain_given_up();
    if (std::chrono::steady_clock::now() < stopped + ladder::kGiveUpTime) CHECK_FALSE(given_up);

    struct Row {
        const char* what;
        std::string input;  // a request, and one behind it
        int status;
    };
    const Row rows[] = {
        {"GET", get("/hello") + get("/"), 503},
        {"HTTP/1.0 keep-alive",
         "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + get("/"), 503},
        {"a job: not run, not offloaded", get("/work?ms=10000") + get("/"), 503},
        {"a POST whose body is still coming: not waited for",
         "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\nabc", 503},
        {"a malformed request is still a 400", "GARBAGE\r\n\r\n" + get("/"), 400},
    };
    for (const Row& row : rows) {
        std::string what = row.what;
        CAPTURE(what);
        Session s(Mode::http, stats);
        int offloaded = 0;
        s.set_offload([&](const SlowJob&) {
            ++offloaded;
            return true;
        });
        // A request half arrived is not answered before it is whole.
        const std::string& in = row.input;
        CHECK(feed(s, in.substr(0, 3)).empty());
        CHECK(s.mid_request());
        std::vector<Response> got = responses(feed(s, in.substr(3)));
        REQUIRE(got.size() == 1);
        CHECK(got[0].status == row.status);
        if (row.status == 503) CHECK(got[0].body == "Service Unavailable\n");
        CHECK(got[0].field("Connection") == "close");
        CHECK(s.done());
        CHECK(offloaded == 0);
    }

    // HEAD: the 503's fields, Connection: close among them, and no body; the
    // request behind it is never answered.
    Session head(Mode::http, stats);
    CHECK(feed(head, "HEAD /hello HTTP/1.1\r\nHost: a\r\n\r\n" + get("/")) ==
          "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
          "Content-Length: 20\r\nConnection: close\r\n\r\n");
    CHECK(head.done());
    CHECK(feed(head, get("/hello")).empty());

    early.complete("worked 1 ms\n");
    std::vector<Response> got = responses(take(early));
    REQUIRE(got.size() == 1);  // the /hello behind it is not started
    CHECK(got[0].status == 200);
    CHECK(got[0].body == "worked 1 ms\n");
    CHECK(got[0].field("Connection") == "close");
    CHECK(early.done());
}

// ---------------------------------------------------------------------------
// Regressions from issue 8 (tests/fuzz, tests/steps/test_adversarial.py).
// Append-only: each case names the finding it pins down.

TEST_CASE("regression: answers held back by the high-water mark are owed a callback") {
    // Found by test_adversarial.py (tiny socket buffers) and fuzz_session
    // (corpus/session/finding-highwater-stall): a big echo and a GET in one
    // read; process() stops at the high-water mark with the GET unanswered.
    // An event loop calls process() and then writes; when that one write
    // took the whole output, want() said {read} only: no read event ever
    // came for the GET already read, and the client waited for ever.
    const std::string big(ladder::kOutputHighWater + 1000, 'b');
    for (bool eof : {false, true}) {
        CAPTURE(eof);
        Stats stats("00", "http");
        Session s(Mode::http, stats);
        s.input().append(post("/echo", big) + get("/hello"));
        if (eof)
            s.on_eof();
        else
            s.process();
        std::vector<Response> got = responses(take(s));  // one write takes it all
        REQUIRE(got.size() == 1);
        CHECK(got[0].body == big);
        CHECK(s.output().empty());
        CHECK(s.want().write);  // come back when writable: at once
        CHECK_FALSE(s.done());
        s.process();  // the writable event's answer()
        got = responses(take(s));
        REQUIRE(got.size() == 1);
        CHECK(got[0].body == kHello);
        CHECK_FALSE(s.want().write);
        CHECK(s.want().read == !eof);
        CHECK(s.done() == eof);
    }
}

TEST_CASE("regression: echo bytes held back by the high-water mark are owed a callback") {
    Stats stats("00", "echo");
    Session s(Mode::echo, stats);
    std::string big(ladder::kOutputHighWater + 1, 'x');
    s.input().append(big);
    s.process();
    s.input().append("tail");  // a blocking step reads anyway
    s.process();
    CHECK(take(s) == big);
    CHECK(s.want().write);
    s.process();
    CHECK(take(s) == "tail");
    CHECK_FALSE(s.want().write);
    CHECK(s.want().read);
}

TEST_CASE("regression: an event loop's order of calls answers every stream") {
    // The fuzz_session model in miniature: pieces arrive only while want()
    // asks to read, process() runs before each write, writes are short,
    // and nothing is called unless want() asks. The answers must equal
    // those of one read processed after every write.
    std::string stream;
    for (int i = 0; i < 12; ++i)
        stream += post("/echo", std::string(40 * 1024, char('a' + i))) + get("/hello") +
                  get("/nope");
    Stats ideal_stats("00", "http");
    Session ideal(Mode::http, ideal_stats);
    std::string expected = feed(ideal, stream);
    for (int writes = 0; writes < 1000; ++writes) {
        ideal.process();
        std::string more = take(ideal);
        if (more.empty()) break;
        expected += more;
    }
    REQUIRE(responses(expected).size() == 36);
    for (std::size_t piece : {std::size_t{1000}, std::size_t{64 * 1024}, stream.size()}) {
        for (std::size_t write : {std::size_t{4096}, std::size_t{1} << 30}) {
            CAPTURE(piece);
            CAPTURE(write);
            Stats stats("00", "http");
            Session s(Mode::http, stats);
            std::string out;
            std::size_t at = 0;
            for (int events = 0; events < 100000; ++events) {
                ladder::Want w = s.want();
                if (w.write) {
                    s.process();
                } else if (w.read && at < stream.size()) {
                    std::size_t n = std::min(piece, stream.size() - at);
                    s.input().append(std::string_view(stream).substr(at, n));
                    at += n;
                    s.process();
                } else {
                    break;  // a loop would sleep here for ever
                }
                std::size_t n = std::min(write, s.output().size());
                out += s.output().readable().substr(0, n);
                s.output().consume(n);
            }
            CHECK(out == expected);
        }
    }
}

// test_session.cpp — Session: echo, and HTTP over the parser: pipelining,
// fragmentation, keep-alive, closing errors, backpressure and the offload hook.
//
// The tests play the event loop: append bytes to input(), call process(),
// and take output() as a write would.
#include "session.h"

#include "protocol_limits.h"

#include <doctest/doctest.h>

#include <chrono>
#include <optional>
#include <random>
#include <string>
#include <string_view>
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

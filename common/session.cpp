// session.cpp — echo, and the HTTP/1.1 subset of SPEC.md on top of http.h.
//
// Choices beyond SPEC's table:
//   - HEAD is allowed where the answer is cheap (/, /hello, /stats): the GET
//     headers, Content-Length included, and no body. /work and /cpu do their
//     work to make a body, so they allow GET only (HEAD there is a 405).
//   - Errors found by the parser (400, 413, 414, 431, 501, 505) close the
//     connection: the request's end is unknown or not to be trusted, so the
//     next request's start is too. Errors of a well-framed request (404,
//     405, a 400 for a bad /work or /cpu argument, 503) keep it open.
//   - Every response says HTTP/1.1 (RFC 9110 §6.2: a server sends its own
//     version) and carries Content-Length; Connection: close when we close
//     after it, Connection: keep-alive when an HTTP/1.0 client asked for it.
//   - Once a stop is requested every answer is the connection's last
//     (Connection: close), and past kDrainTime a request is answered 503
//     instead of started (common/signals.h: the stop's timeline).
#include "session.h"

#include "http.h"
#include "protocol_limits.h"
#include "signals.h"

#include <cassert>
#include <charconv>
#include <chrono>
#include <cstring>
#include <thread>
#include <utility>

namespace ladder {

struct Session::Reply {
    int status = 200;
    std::string_view type = "Content-Type: text/plain\r\n";  // the whole header line
    std::string_view body = {};
    std::string_view extra = {};  // whole header lines, each ending in CRLF
    bool head = false;            // HEAD: the headers of the GET answer, no body
    bool keep_alive = true;       // false: Connection: close, and close after it
    bool http10 = false;          // keep-alive must be said out loud to HTTP/1.0
};

namespace {

// Whole lines, CRLF included: a response is a few copies of ready-made
// lines (every separate piece is one more memcpy per request).
struct Status {
    int code;
    std::string_view line;  // the status line
    std::string_view body;  // the body of an error response
};

constexpr Status kStatuses[] = {
    {200, "HTTP/1.1 200 OK\r\n", ""},
    {400, "HTTP/1.1 400 Bad Request\r\n", "Bad Request\n"},
    {404, "HTTP/1.1 404 Not Found\r\n", "Not Found\n"},
    {405, "HTTP/1.1 405 Method Not Allowed\r\n", "Method Not Allowed\n"},
    {413, "HTTP/1.1 413 Content Too Large\r\n", "Content Too Large\n"},
    {414, "HTTP/1.1 414 URI Too Long\r\n", "URI Too Long\n"},
    {431, "HTTP/1.1 431 Request Header Fields Too Large\r\n", "Request Header Fields Too Large\n"},
    {501, "HTTP/1.1 501 Not Implemented\r\n", "Not Implemented\n"},
    {503, "HTTP/1.1 503 Service Unavailable\r\n", "Service Unavailable\n"},
    {505, "HTTP/1.1 505 HTTP Version Not Supported\r\n", "HTTP Version Not Supported\n"},
};

const Status& status(int code) noexcept {
    for (const Status& s : kStatuses)
        if (s.code == code) return s;
    assert(false && "a status without a line in kStatuses");
    return kStatuses[1];
}

enum class Route { hello, echo, work, cpu, stats };

struct RouteEntry {
    std::string_view path;
    Route route;
    std::string_view method;  // the one method it serves ...
    bool head;                // ... and HEAD too?
    std::string_view allow;   // the Allow line of its 405

    bool allows(std::string_view m) const noexcept {
        return m == method || (head && m == "HEAD");
    }
};

constexpr RouteEntry kRoutes[] = {
    {"/", Route::hello, "GET", true, "Allow: GET, HEAD\r\n"},
    {"/hello", Route::hello, "GET", true, "Allow: GET, HEAD\r\n"},
    {"/echo", Route::echo, "POST", false, "Allow: POST\r\n"},
    {"/work", Route::work, "GET", false, "Allow: GET\r\n"},
    {"/cpu", Route::cpu, "GET", false, "Allow: GET\r\n"},
    {"/stats", Route::stats, "GET", true, "Allow: GET, HEAD\r\n"},
};

const RouteEntry* find_route(std::string_view path) noexcept {
    for (const RouteEntry& r : kRoutes)
        if (r.path == path) return &r;
    return nullptr;
}

// GET /work?ms=N or /cpu?n=N as a job; nullopt when N is missing, is not
// all digits, or is past its limit (a 400, not a very long answer).
std::optional<SlowJob> slow_job(Route route, std::string_view query) noexcept {
    bool work = route == Route::work;
    std::optional<std::string_view> text = query_param(query, work ? "ms" : "n");
    std::optional<std::uint64_t> n = text ? parse_decimal(*text) : std::nullopt;
    if (!n || *n > (work ? kMaxWorkMs : kMaxCpuRounds)) return std::nullopt;
    return SlowJob{work ? SlowJob::work : SlowJob::cpu, *n};
}

// FNV-1a over a counter, folded with a shift: each round needs the last
// one's result, so the compiler can neither skip nor vectorise the rounds,
// and the digest is the same on every machine.
std::uint64_t cpu_digest(std::uint64_t rounds) noexcept {
    std::uint64_t h = 0xcbf29ce484222325;
    for (std::uint64_t i = 0; i < rounds; ++i) {
        h = (h ^ i) * 0x100000001b3;
        h ^= h >> 29;
    }
    return h;
}

}  // namespace

std::string run_slow_job(const SlowJob& job) {
    if (job.kind == SlowJob::work) {
        std::this_thread::sleep_for(std::chrono::milliseconds(job.arg));
        return "worked " + std::to_string(job.arg) + " ms\n";
    }
    // 16 hex digits and a newline, leading zeros kept: the same length always.
    std::string digest(17, '\n');
    std::uint64_t h = cpu_digest(job.arg);
    for (std::size_t i = 16; i-- > 0; h >>= 4) digest[i] = "0123456789abcdef"[h & 15];
    return digest;
}

Session::Session(Mode mode, Stats& stats) : mode_(mode), stats_(stats) {}

void Session::count_input() noexcept {
    bump(stats_.counters().bytes_in, in_.size() - counted_in_);
    counted_in_ = in_.size();
}

void Session::drop_input(std::size_t n) noexcept {
    in_.consume(n);
    counted_in_ -= n;
    head_seen_ = body_end_ = 0;
}

void Session::process() {
    count_input();
    if (aborted_) return;
    if (mode_ == Mode::echo)
        process_echo();
    else if (mode_ == Mode::frame)
        process_frame();
    else
        process_http();
    paused_ = !closing_ && !in_.empty() && out_.size() > kOutputHighWater;
}

void Session::process_echo() {
    if (!in_.empty() && out_.size() <= kOutputHighWater) {
        std::size_t n = in_.size();
        // Nothing waiting to go out: hand the read buffer over whole instead
        // of copying it (the old output buffer becomes the next read buffer).
        if (out_.empty()) {
            std::swap(in_, out_);
        } else {
            out_.append(in_.readable());
            in_.clear();
        }
        counted_in_ = 0;
        ++answered_;
        bump(stats_.counters().requests);
        if (worker_requests_) bump(*worker_requests_);
        bump(stats_.counters().bytes_out, n);
    }
    if (peer_closed_ && in_.empty()) closing_ = true;
}

// Frames go back one by one, as they came: a 4-byte big-endian length,
// then the payload. A read may hold half a frame or several: the length
// says where each ends, which the byte stream alone does not.
void Session::process_frame() {
    for (;;) {
        if (closing_) {
            drop_input(in_.size());
            return;
        }
        std::string_view in = in_.readable();
        if (in.size() < 4 || out_.size() > kOutputHighWater) break;
        auto byte = [&](int i) { return std::uint32_t(static_cast<unsigned char>(in[i])); };
        std::uint32_t length = byte(0) << 24 | byte(1) << 16 | byte(2) << 8 | byte(3);
        if (length > kMaxFrame) {  // past the limit: no later boundary can be trusted
            closing_ = true;
            continue;
        }
        if (in.size() < 4 + std::size_t(length)) break;  // the rest is on its way
        out_.append(in.substr(0, 4 + length));
        drop_input(4 + length);
        ++answered_;
        bump(stats_.counters().requests);
        if (worker_requests_) bump(*worker_requests_);
        bump(stats_.counters().bytes_out, 4 + length);
    }
    if (peer_closed_) {  // a partial frame can never be completed
        closing_ = true;
        drop_input(in_.size());
    }
}

void Session::process_http() {
    // One Request per thread, reused by every session and call on it: its
    // kMaxHeaders slots of views are 4 KiB, and a fresh local would clear
    // them all for each request (measured by callgrind: over a third of a
    // step's own instructions per /hello). parse_request sets every field
    // it reports on, so nothing of the previous request shows through.
    thread_local Request req;
    for (;;) {
        if (closing_) {  // nothing after the last answer is ever answered
            drop_input(in_.size());
            return;
        }
        if (job_out_ || out_.size() > kOutputHighWater) return;
        if (!answer_next(req)) break;
    }
    // No more bytes will come: a partial request can never be answered.
    if (peer_closed_) {
        closing_ = true;
        drop_input(in_.size());
    }
}

// Answers the request at the front of input() if all of it is there.
// False when input() holds no complete request.
bool Session::answer_next(Request& req) {
    if (in_.empty() || in_.size() < body_end_) return false;
    ParseResult r = parse_request(in_.readable(), req, head_seen_);
    if (r.state == ParseResult::partial) {
        head_seen_ = in_.size();
        return false;
    }
    head_seen_ = 0;
    if (r.state == ParseResult::error) {
        send({.status = r.status, .body = status(r.status).body, .keep_alive = false});
        return true;
    }
    if (drain_over()) {
        // A stop began more than kDrainTime ago: starting this request now
        // would keep the server from exiting. Say so, and close.
        send({.status = 503, .body = status(503).body, .head = req.method == "HEAD",
              .keep_alive = false});
        return true;
    }
    // The body is read whole, even for a 404 or 405: it must not be taken
    // for the next request. content_length <= kMaxBody here.
    std::size_t end = r.bytes + static_cast<std::size_t>(req.content_length);
    if (in_.size() < end) {
        body_end_ = end;
        return false;
    }
    answer(req, in_.readable().substr(r.bytes, end - r.bytes));
    drop_input(end);
    return true;
}

void Session::answer(const Request& req, std::string_view body) {
    Reply reply{.head = req.method == "HEAD",
                .keep_alive = req.keep_alive,
                .http10 = req.minor_version == 0};
    const RouteEntry* route = find_route(req.path);
    std::string json;  // the /stats body, alive until it is sent
    if (route == nullptr) {
        reply.status = 404;
    } else if (!route->allows(req.method)) {
        reply.status = 405;
        reply.extra = route->allow;
    } else if (route->route == Route::hello) {
        reply.body = "Hello, World!\n";
    } else if (route->route == Route::echo) {
        reply.type = "Content-Type: application/octet-stream\r\n";
        reply.body = body;
    } else if (route->route == Route::stats) {
        json = stats_.json();
        reply.type = "Content-Type: application/json\r\n";
        reply.body = json;
    } else if (std::optional<SlowJob> job = slow_job(route->route, req.query)) {
        return run_job(*job, reply);
    } else {
        reply.status = 400;
    }
    if (reply.status != 200) reply.body = status(reply.status).body;
    send(reply);
}

// Runs the job here, or hands it to the offload hook and pauses until
// complete(). `reply` holds what the answer needs to know of the request.
void Session::run_job(const SlowJob& job, Reply& reply) {
    if (!offload_) {
        // Inline, this thread will not wait for a while: a stop signal that
        // came meanwhile would go unseen until the work queued behind is done.
        notice_pending_stop();
        if (drain_over()) {  // ... and this job would come after the drain time
            reply.status = 503;
            reply.body = status(503).body;
            reply.keep_alive = false;
            return send(reply);
        }
        std::string body = run_slow_job(job);
        reply.body = body;
        return send(reply);
    }
    if (!offload_(job)) {
        // Backpressure: a full queue says so at once rather than growing.
        reply.status = 503;
        reply.body = status(503).body;
        reply.extra = "Retry-After: 1\r\n";
        return send(reply);
    }
    job_out_ = true;
    job_keep_alive_ = reply.keep_alive;
    job_http10_ = reply.http10;
}

// Formats the response straight into output(): one size sum, one
// reservation, no temporary strings.
void Session::send(const Reply& reply) {
    Reply r = reply;
    if (stop_requested()) r.keep_alive = false;  // a stop: this is the connection's last answer
    char length[24];
    char* length_end = std::to_chars(length, length + sizeof length, r.body.size()).ptr;
    std::string_view connection = !r.keep_alive ? "Connection: close\r\n"
                                  : r.http10    ? "Connection: keep-alive\r\n"
                                                : "";
    std::string_view body = r.head ? std::string_view{} : r.body;
    const std::string_view parts[] = {
        status(r.status).line, r.type,
        "Content-Length: ", std::string_view(length, length_end), "\r\n",
        connection, r.extra, "\r\n",
        body};
    std::size_t total = 0;
    for (std::string_view part : parts) total += part.size();
    char* at = out_.writable(total).data();
    for (std::string_view part : parts) {
        if (!part.empty()) std::memcpy(at, part.data(), part.size());
        at += part.size();
    }
    out_.commit(total);
    ++answered_;
    bump(stats_.counters().requests);
    if (worker_requests_) bump(*worker_requests_);
    bump(stats_.counters().bytes_out, total);
    if (!r.keep_alive) closing_ = true;
}

void Session::on_eof() {
    peer_closed_ = true;
    process();
}

void Session::abort() noexcept {
    count_input();
    aborted_ = peer_closed_ = closing_ = true;
    paused_ = false;
    in_.clear();
    out_.clear();
    counted_in_ = head_seen_ = body_end_ = 0;
}

Want Session::want() const noexcept {
    bool stop = closing_ || peer_closed_ || job_out_ || out_.size() > kOutputHighWater;
    // paused_: requests already read wait behind the high-water mark. A loop
    // that writes the output away in one go must still come back to
    // process() them: ask for the next writable event, which is at once.
    return {.read = !stop, .write = !out_.empty() || paused_};
}

bool Session::done() const noexcept { return aborted_ || (closing_ && out_.empty()); }

bool Session::mid_request() const noexcept {
    return !closing_ && (job_out_ || !in_.empty());
}

void Session::set_offload(std::function<bool(const SlowJob&)> offload) {
    offload_ = std::move(offload);
}

void Session::complete_refused() {
    assert(job_out_);
    job_out_ = false;
    if (aborted_) return;
    send({.status = 503, .body = status(503).body, .extra = "Retry-After: 1\r\n",
          .keep_alive = false});
    process();
}

void Session::complete(std::string_view body) {
    assert(job_out_);
    job_out_ = false;
    if (aborted_) return;
    send({.body = body, .keep_alive = job_keep_alive_, .http10 = job_http10_});
    process();
}

}  // namespace ladder

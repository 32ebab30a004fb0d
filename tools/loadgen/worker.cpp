#include "worker.h"

#include "error.h"
#include "http_response.h"
#include "signals.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/prctl.h>
#include <unistd.h>

namespace loadgen {

namespace {

constexpr std::int64_t kMs = 1'000'000;
constexpr std::int64_t kSweepEvery = 50 * kMs;  // timeouts and reconnects
constexpr std::int64_t kBackoff = 50 * kMs;     // after a failed connect
constexpr std::size_t kMaxHead = 64 * 1024;     // a response head larger is an error
constexpr std::size_t kReadBuffer = 64 * 1024;
constexpr int kEventsPerWait = 256;
constexpr std::uint64_t kStopMark = UINT64_MAX;

constexpr std::string_view kErrorNames[kErrorKinds] = {
    "connect", "reset", "timeout", "bad_status", "wrong_bytes", "closed", "bad_response"};

// The first error of each kind is explained on stderr; the rest only counted.
std::atomic<bool> explained[kErrorKinds];

void explain(ErrorKind kind, const std::string& target, int err) {
    if (explained[kind].exchange(true)) return;
    std::string detail = err ? ": " + ladder::errno_text(err) : std::string();
    const char* what = "";
    switch (kind) {
    case connect_error: what = "could not connect"; break;
    case reset: what = "the server reset a connection"; break;
    case timeout: what = "a request had no answer within --timeout"; break;
    case bad_status: what = "a response had a status other than 2xx"; break;
    case wrong_bytes: what = "the echo differed from the bytes sent"; break;
    case closed: what = "the server closed a connection with requests in flight"; break;
    case bad_response: what = "a response was not well-formed HTTP/1.1"; break;
    case kErrorKinds: break;
    }
    std::fprintf(stderr, "loadgen: %s (%s)%s; counted in errors.%s\n", what,
                 target.c_str(), detail.c_str(), kErrorNames[kind].data());
}

std::uint64_t mix(std::uint64_t x) {  // splitmix64's finaliser
    x += 0x9e3779b97f4a7c15;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9;
    x = (x ^ (x >> 27)) * 0x94d049bb133111eb;
    return x ^ (x >> 31);
}

std::uint64_t pack(std::size_t index, std::uint32_t generation) {
    return (std::uint64_t(index) << 32) | generation;
}

}  // namespace

std::string_view error_name(int kind) { return kErrorNames[kind]; }

std::int64_t now_ns() noexcept {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return std::int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

std::uint64_t Results::error_total() const {
    std::uint64_t total = 0;
    for (auto e : errors) total += e;
    return total;
}

void Results::merge(const Results& o) {
    latency.merge(o.latency);
    send_lag.merge(o.send_lag);
    requests += o.requests;
    for (int k = 0; k < kErrorKinds; ++k) errors[k] += o.errors[k];
    bytes_sent += o.bytes_sent;
    bytes_received += o.bytes_received;
    unfinished += o.unfinished;
    connects += o.connects;
    stopped_ns = std::max(stopped_ns, o.stopped_ns);
}

Worker::Worker(const Plan& plan, int first, int count, std::uint64_t quota)
    : plan_(plan),
      cfg_(plan.config),
      echo_(cfg_.mode == ladder::Mode::echo),
      open_loop_(cfg_.open_loop()),
      new_conn_(cfg_.new_conn),
      limited_(cfg_.requests > 0),
      depth_(std::size_t(cfg_.pipeline)),
      timeout_ns_(std::int64_t(cfg_.timeout_s * 1e9)),
      epoll_(::epoll_create1(EPOLL_CLOEXEC)),
      conns_(std::size_t(count)),
      buffer_(kReadBuffer),
      iov_(depth_),
      events_(kEventsPerWait),
      quota_left_(quota) {
    if (!epoll_) ladder::throw_sys("epoll_create1");
    auto total = std::uint64_t(cfg_.connections);
    for (int i = 0; i < count; ++i) {
        Conn& c = conns_[std::size_t(i)];
        c.id = first + i;
        c.started.resize(depth_);
        c.quota = cfg_.requests / total + (std::uint64_t(c.id) < cfg_.requests % total);
        if (open_loop_ && limited_ && c.quota == 0) ++exhausted_;
    }
    touched_.reserve(conns_.size());
    if (ladder::stop_fd() >= 0) {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = kStopMark;
        if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, ladder::stop_fd(), &ev) != 0)
            ladder::throw_sys("epoll_ctl(ADD, stop eventfd)");
    }
}

// ---- time and identity of request n on a connection ----------------------

// Connection c's n-th request is due at (n·C + id) / R seconds: each
// connection runs at R/C requests/s, the C timelines interleaved evenly.
std::int64_t Worker::intended(const Conn& c, std::uint64_t n) const {
    double slot = double(n) * cfg_.connections + c.id;
    return plan_.start_ns + std::int64_t(slot * 1e9 / cfg_.rate);
}

// Each echo message is kPoolSpan-dependent random bytes: a different window
// of the pool per (connection, request), so a reply from another
// connection or an old message fails verification.
std::size_t Worker::pool_offset(const Conn& c, std::uint64_t n) const {
    return std::size_t(mix((std::uint64_t(c.id) << 40) ^ n) % kPoolSpan);
}

// ---- sockets -------------------------------------------------------------

void Worker::open_socket(Conn& c, std::int64_t now) {
    c.base = c.done;
    c.written = 0;
    c.received = 0;
    c.phase = Conn::head;
    c.carry.clear();
    c.server_closing = false;
    ++c.generation;
    c.fd.reset(
        ::socket(plan_.address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!c.fd) return on_connect_failed(c, now, errno);
    if (!new_conn_) {
        // Pipelined batches and echo remainders are written while earlier
        // bytes are unacknowledged; Nagle would hold them for an ACK.
        int on = 1;
        if (::setsockopt(c.fd.get(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) != 0)
            return on_connect_failed(c, now, errno);
    }
    // One registration for the socket's life: edge-triggered, so neither
    // readiness needs re-arming and no epoll_ctl runs per request.
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.u64 = pack(std::size_t(&c - conns_.data()), c.generation);
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, c.fd.get(), &ev) != 0)
        return on_connect_failed(c, now, errno);
    c.state = Conn::connecting;
    c.connect_at = now;
    auto* addr = reinterpret_cast<const sockaddr*>(&plan_.address);
    if (::connect(c.fd.get(), addr, plan_.address_length) != 0 && errno != EINPROGRESS)
        return on_connect_failed(c, now, errno);
    // EINPROGRESS (or, rarely, done at once): EPOLLOUT reports the outcome.
}

void Worker::on_connect_failed(Conn& c, std::int64_t now, int err) {
    close_socket(c);
    c.retry_at = now + kBackoff;
    if (c.done < c.sent) {  // --new-conn: the request was waiting for this socket
        explain(connect_error, plan_.target, err);
        while (c.done < c.sent) finish(c, connect_error, now);
    } else {
        count_error(connect_error, err, now);
    }
}

void Worker::on_connected(Conn& c, std::int64_t now) {
    c.state = Conn::open;
    c.base = c.done;  // the sweep may have timed out queued requests meanwhile
    ++r_.connects;
    last_progress_ = now;
    if (new_conn_) flush(c, now);
    else send_more(c, now);
}

void Worker::close_socket(Conn& c) {
    c.fd.reset();  // close() also removes it from the epoll set
    c.state = Conn::no_socket;
    ++c.generation;
}

// The socket failed with requests in flight: each of them is an error of
// this kind. Then a fresh socket (persistent) or the next request (--new-conn).
void Worker::lost(Conn& c, ErrorKind kind, std::int64_t now, int err) {
    bool served = c.done > c.base;
    if (c.done < c.sent) explain(kind, plan_.target, err);
    while (c.done < c.sent) finish(c, kind, now);
    close_socket(c);
    // A server that closes connections before answering anything would
    // otherwise be hammered with reconnects.
    after_close(c, now, !served);
}

void Worker::after_close(Conn& c, std::int64_t now, bool backoff) {
    if (backoff) {
        c.retry_at = now + kBackoff;
        return;
    }
    if (new_conn_) send_more(c, now);
    else if (running_ && !stop_seen_) open_socket(c, now);
}

void Worker::count_error(ErrorKind kind, int err, std::int64_t now) {
    explain(kind, plan_.target, err);
    if (counting(now)) ++r_.errors[kind];
}

void Worker::finish(Conn& c, int kind, std::int64_t now) {
    std::uint64_t n = c.done++;
    ++finished_;
    last_progress_ = now;
    std::int64_t start = c.started[n % depth_];
    if (start < plan_.measure_ns) return;  // began during the warm-up
    if (kind >= 0) {
        ++r_.errors[kind];
        return;
    }
    std::int64_t latency = now - start;
    if (latency > timeout_ns_) {
        explain(timeout, plan_.target, 0);
        ++r_.errors[timeout];
        return;
    }
    r_.latency.record(std::uint64_t(std::max<std::int64_t>(0, latency + 500) / 1000));
    ++r_.requests;
}

// ---- sending -------------------------------------------------------------

void Worker::send_more(Conn& c, std::int64_t now) {
    if (!running_ || stop_seen_) return;
    if (new_conn_) {
        if (c.state != Conn::no_socket || c.done < c.sent || now < c.retry_at) return;
    } else if (c.state != Conn::open || c.server_closing) {
        return;  // not connected yet, or the server said it will close this one
    }
    std::uint64_t room = depth_ - (c.sent - c.done);
    std::uint64_t k = open_loop_ ? std::min(room, c.due - c.sent) : room;
    if (!open_loop_ && limited_ && counting(now)) {
        k = std::min(k, quota_left_);
        quota_left_ -= k;
    }
    if (k == 0) return;
    for (std::uint64_t i = 0; i < k; ++i, ++c.sent)
        c.started[c.sent % depth_] = open_loop_ ? intended(c, c.sent) : now;
    if (!open_loop_) released_ += k;
    if (new_conn_) open_socket(c, now);  // the request goes out once connected
    else flush(c, now);
}

// Writes every committed byte not yet written, in one sendmsg: the bytes of
// request n sit at (n - base)·unit in the socket's stream.
void Worker::flush(Conn& c, std::int64_t now) {
    std::uint64_t unit = plan_.unit;
    std::uint64_t pending = (c.sent - c.base) * unit - c.written;
    if (pending == 0 || c.state != Conn::open) return;
    std::size_t count = 0;
    std::uint64_t first = c.base + c.written / unit;
    std::size_t skip = std::size_t(c.written % unit);
    if (!echo_) {
        // `requests` holds `pipeline` copies back to back, and at most
        // `pipeline` requests are unwritten, so one slice covers them.
        pending = std::min<std::uint64_t>(pending, plan_.requests.size() - skip);
        iov_[0] = {const_cast<char*>(plan_.requests.data()) + skip, std::size_t(pending)};
        count = 1;
    } else {
        for (std::uint64_t n = first; n < c.sent; ++n, skip = 0)
            iov_[count++] = {
                const_cast<char*>(plan_.pool.data()) + pool_offset(c, n) + skip,
                plan_.unit - skip};
    }
    msghdr msg{};
    msg.msg_iov = iov_.data();
    msg.msg_iovlen = count;
    ssize_t n = ladder::retry_eintr(
        [&] { return ::sendmsg(c.fd.get(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT); });
    if (n >= 0) {
        c.written += std::uint64_t(n);
        if (counting(now)) r_.bytes_sent += std::uint64_t(n);
        return;  // a short write waits for the next EPOLLOUT edge
    }
    if (errno == EAGAIN) return;
    int err = errno;
    lost(c, err == EPIPE ? closed : reset, now, err);
}

// ---- receiving -----------------------------------------------------------

void Worker::on_event(std::uint64_t data, std::uint32_t events, std::int64_t now) {
    std::size_t index = std::size_t(data >> 32);
    Conn& c = conns_[index];
    if (std::uint32_t(data) != c.generation)
        return;  // an event for a socket since closed
    if (c.state == Conn::connecting) {
        if (events & (EPOLLERR | EPOLLHUP)) {
            int err = 0;
            socklen_t len = sizeof err;
            ::getsockopt(c.fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
            return on_connect_failed(c, now, err ? err : ECONNREFUSED);
        }
        if (!(events & EPOLLOUT)) return;
        on_connected(c, now);
        if (std::uint32_t(data) != c.generation) return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        on_readable(c, now, events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR));
    if (std::uint32_t(data) == c.generation && (events & EPOLLOUT)) flush(c, now);
}

// Edge-triggered: read until the socket is empty. A short read means it is
// (new bytes arriving later raise a new edge), except that a FIN queued
// behind the data only shows on the next read: when the event says the peer
// has closed, read on to the end.
void Worker::on_readable(Conn& c, std::int64_t now, bool to_eof) {
    std::uint32_t generation = c.generation;
    for (;;) {
        ssize_t n = ::recv(c.fd.get(), buffer_.data(), buffer_.size(), 0);
        if (n > 0) {
            if (counting(now)) r_.bytes_received += std::uint64_t(n);
            auto size = std::size_t(n);
            bool ok = echo_ ? consume_echo(c, buffer_.data(), size, now)
                            : consume_http(c, buffer_.data(), size, now);
            if (!ok || c.generation != generation) return;
            if (size < buffer_.size() && !to_eof && c.state != Conn::draining) break;
            continue;
        }
        if (n == 0) return on_eof(c, now);
        if (errno == EINTR) continue;
        if (errno == EAGAIN) break;
        int err = errno;
        if (c.done == c.sent) {  // nothing in flight: a quiet connection went away
            close_socket(c);
            return after_close(c, now, false);
        }
        return lost(c, err == ECONNRESET ? reset : closed, now, err);
    }
    send_more(c, now);
}

void Worker::on_eof(Conn& c, std::int64_t now) {
    if (c.phase == Conn::body_to_eof && c.done < c.sent) {
        // A response without Content-Length ends where the connection does.
        response_done(c, now);
    }
    if (c.done < c.sent) return lost(c, closed, now);
    bool backoff = c.done == c.base && !new_conn_;  // closed before serving anything
    close_socket(c);
    after_close(c, now, backoff);
}

// Frames responses: finds each head (across reads if it is split), then
// counts the body's bytes without copying them.
bool Worker::consume_http(Conn& c, const char* p, std::size_t n, std::int64_t now) {
    while (n > 0) {
        if (c.phase != Conn::head) {
            std::size_t take = n;
            if (c.phase == Conn::body)
                take = std::size_t(std::min<std::uint64_t>(n, c.body_left));
            p += take;
            n -= take;
            if (c.phase == Conn::body && (c.body_left -= take) == 0)
                response_done(c, now);
            continue;
        }
        if (c.done == c.sent) {
            lost(c, bad_response, now);  // bytes that answer no request
            return false;
        }
        std::string_view head;
        if (c.carry.empty()) {
            auto* end = static_cast<const char*>(::memmem(p, n, "\r\n\r\n", 4));
            if (!end) {
                c.carry.assign(p, n);
                break;
            }
            head = {p, std::size_t(end + 4 - p)};
            p += head.size();
            n -= head.size();
        } else {
            std::size_t old = c.carry.size();
            c.carry.append(p, n);
            auto at = c.carry.find("\r\n\r\n", old >= 3 ? old - 3 : 0);
            if (at == std::string::npos) {
                if (c.carry.size() > kMaxHead) return lost(c, bad_response, now), false;
                break;
            }
            std::size_t used = at + 4 - old;
            head = std::string_view(c.carry).substr(0, at + 4);
            p += used;
            n -= used;
        }
        ResponseHead h = parse_head(head);
        c.carry.clear();  // `head` is not used past this point
        if (!h.valid || h.chunked) return lost(c, bad_response, now), false;
        if (h.status < 200) continue;  // 1xx: an interim answer; the real one follows
        c.status = h.status;
        c.server_closing = c.server_closing || h.close;
        if (!has_body(h.status) || h.length == 0) {
            response_done(c, now);
        } else if (h.length > 0) {
            c.phase = Conn::body;
            c.body_left = std::uint64_t(h.length);
        } else {
            c.phase = Conn::body_to_eof;
        }
    }
    return true;
}

void Worker::response_done(Conn& c, std::int64_t now) {
    c.phase = Conn::head;
    bool good = c.status >= 200 && c.status < 300;
    if (!good) explain(bad_status, plan_.target, 0);
    finish(c, good ? -1 : bad_status, now);
    // --new-conn asked for Connection: close; wait for the server's FIN so
    // that the server, not us, holds the TIME_WAIT.
    if (new_conn_) c.state = Conn::draining;
}

// Compares every echoed byte with the window of the pool it was sent from.
bool Worker::consume_echo(Conn& c, const char* p, std::size_t n, std::int64_t now) {
    std::size_t unit = plan_.unit;
    while (n > 0) {
        if (c.done == c.sent) {
            lost(c, wrong_bytes, now);  // more bytes than were sent
            return false;
        }
        std::size_t at = std::size_t(c.received);
        std::size_t take = std::min(n, unit - at);
        const char* expected = plan_.pool.data() + pool_offset(c, c.done) + at;
        if (std::memcmp(p, expected, take) != 0) {
            lost(c, wrong_bytes, now);
            return false;
        }
        p += take;
        n -= take;
        if ((c.received += take) < unit) continue;
        c.received = 0;
        finish(c, -1, now);
        if (new_conn_) {
            // One message per connection: nothing more to read or send.
            close_socket(c);
            send_more(c, now);
            return false;
        }
    }
    return true;
}

// ---- the loop ------------------------------------------------------------

// Open loop: makes due every request whose time has come, in schedule
// order, then gives each connection that got new work one chance to send.
void Worker::release_due(std::int64_t now) {
    touched_.clear();
    while (next_due_ <= now) {
        Conn& c = conns_[cursor_];
        if (!limited_ || c.quota > 0) {
            if (limited_ && intended(c, c.due) >= plan_.measure_ns && --c.quota == 0)
                ++exhausted_;
            ++c.due;
            ++released_;
            if (c.due == c.sent + 1) touched_.push_back(&c);
        }
        if (++cursor_ == conns_.size()) {
            cursor_ = 0;
            ++round_;
        }
        next_due_ =
            exhausted_ == conns_.size() ? INT64_MAX : intended(conns_[cursor_], round_);
    }
    for (Conn* c : touched_) {
        bool free =
            c->state == Conn::open && !c->server_closing && c->sent - c->done < depth_;
        if (free && counting(now)) {
            std::int64_t lag = now - intended(*c, c->sent);
            r_.send_lag.record(std::uint64_t(std::max<std::int64_t>(0, lag) / 1000));
        }
        send_more(*c, now);
    }
}

// Every kSweepEvery: requests past --timeout, and sockets due a reconnect.
void Worker::sweep(std::int64_t now) {
    for (Conn& c : conns_) {
        // A SYN the server's full accept queue dropped is retried by the
        // kernel for minutes; a handshake past --timeout is a failed connect.
        if (c.state == Conn::connecting && now - c.connect_at > timeout_ns_) {
            on_connect_failed(c, now, ETIMEDOUT);
            continue;
        }
        if (c.done < c.sent && now - c.started[c.done % depth_] > timeout_ns_) {
            lost(c, timeout, now);
            continue;
        }
        // Open loop: requests still queued behind a dead connection time
        // out too, without ever being sent.
        while (open_loop_ && c.done == c.sent && c.sent < c.due &&
               now - intended(c, c.sent) > timeout_ns_) {
            explain(timeout, plan_.target, 0);
            if (intended(c, c.sent) >= plan_.measure_ns) ++r_.errors[timeout];
            ++c.sent;
            ++c.done;
            ++finished_;
        }
        if (c.state == Conn::draining && c.done > 0 &&
            now - c.started[(c.done - 1) % depth_] > timeout_ns_) {
            close_socket(c);  // the server kept a Connection: close socket open
            send_more(c, now);
        }
        if (c.state == Conn::no_socket && now >= c.retry_at) {
            if (new_conn_) send_more(c, now);
            else open_socket(c, now);
        }
    }
}

bool Worker::finished(std::int64_t now) const {
    if (stop_seen_ || gave_up_) return true;
    if (!limited_) return now >= plan_.end_ns;
    bool all_released = open_loop_ ? exhausted_ == conns_.size() : quota_left_ == 0;
    return all_released && finished_ == released_;
}

int Worker::wait(std::int64_t now, std::int64_t until) {
    std::int64_t ns = std::max<std::int64_t>(0, until - now);
    timespec timeout{ns / 1'000'000'000, ns % 1'000'000'000};
    int n = ::epoll_pwait2(epoll_.get(), events_.data(), int(events_.size()), &timeout,
                           nullptr);
    if (n < 0) {
        if (errno != EINTR) ladder::throw_sys("epoll_pwait2");
        return 0;
    }
    return n;
}

void Worker::handle_batch(int n, std::int64_t now) {
    for (int i = 0; i < n; ++i) {
        if (events_[std::size_t(i)].data.u64 == kStopMark) {
            stop_seen_ = true;
            continue;
        }
        on_event(events_[std::size_t(i)].data.u64, events_[std::size_t(i)].events, now);
    }
}

void Worker::connect_all() {
    std::int64_t now = now_ns();
    last_progress_ = now;
    if (new_conn_) return;
    for (Conn& c : conns_) open_socket(c, now);
    std::int64_t give_up = now + timeout_ns_;
    auto connecting = [&] {
        return std::any_of(conns_.begin(), conns_.end(),
                           [](const Conn& c) { return c.state == Conn::connecting; });
    };
    while (connecting() && now < give_up && !ladder::stop_requested()) {
        int n = wait(now, std::min(give_up, now + 100 * kMs));
        now = now_ns();
        handle_batch(n, now);
    }
}

void Worker::run() {
    if (open_loop_) {
        // Timer slack would let each sleep overshoot by ~50 µs, which the
        // open loop's latencies would then include.
        ::prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
        next_due_ = conns_.empty() ? INT64_MAX : intended(conns_[0], 0);
    }
    running_ = true;
    std::int64_t now = now_ns();
    last_progress_ = now;
    std::int64_t next_sweep = now + kSweepEvery;
    for (Conn& c : conns_) {
        if (new_conn_) c.retry_at = now;
        send_more(c, now);
    }
    while (!finished(now)) {
        if (open_loop_) release_due(now);
        if (now >= next_sweep) {
            sweep(now);
            next_sweep = now + kSweepEvery;
            // --requests against a server that answers nothing: stop, do
            // not spin until killed.
            if (limited_ && now - last_progress_ > std::max(timeout_ns_, 1000 * kMs)) {
                std::fprintf(stderr, "loadgen: no progress for %.1f s; giving up\n",
                             double(now - last_progress_) / 1e9);
                gave_up_ = true;
            }
        }
        std::int64_t until =
            std::min({next_sweep, next_due_, limited_ ? INT64_MAX : plan_.end_ns});
        int n = wait(now, until);
        now = now_ns();
        handle_batch(n, now);
        publish();
    }
    r_.stopped_ns = limited_ ? now : std::min(now, plan_.end_ns);
    count_unfinished();
    publish();
    for (Conn& c : conns_) close_socket(c);
}

void Worker::count_unfinished() {
    for (Conn& c : conns_) {
        for (std::uint64_t n = c.done; n < c.sent; ++n)
            if (c.started[n % depth_] >= plan_.measure_ns) ++r_.unfinished;
        for (std::uint64_t n = c.sent; n < c.due; ++n)
            if (intended(c, n) >= plan_.measure_ns) ++r_.unfinished;
    }
}

void Worker::publish() {
    progress_requests.store(r_.requests, std::memory_order_relaxed);
    progress_errors.store(r_.error_total(), std::memory_order_relaxed);
}

}  // namespace loadgen

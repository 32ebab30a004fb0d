// conn.h — the connections of one event loop (steps 03 onwards).
//
// A Conn is one client: its socket, its protocol session, what it is
// waiting for, and when it expires. A ConnTable holds a loop's Conns indexed
// by descriptor: the kernel hands out the lowest free number, so the table
// stays dense and finding a connection from an event is one index.
//
// Thread rule: a ConnTable and its Conns belong to one loop thread.
#pragma once

#include "fd.h"
#include "net.h"
#include "session.h"
#include "signals.h"
#include "timeouts.h"

#include <memory>
#include <vector>

namespace ladder {

struct Conn {
    Conn(Fd socket, Mode mode, Stats& stats) : fd(std::move(socket)), session(mode, stats) {}

    // Answers what has arrived, sends what the socket takes now, re-arms the
    // deadline, and says what to wait for next. A write that would block
    // leaves the rest for the next writable event.
    Want answer(const Timeouts& timeouts);

    // Moves the deadline after progress. The header clock starts when a
    // request begins, and more bytes of that same request do not wind it
    // back (one byte a second is slowloris); an answered request, or a
    // connection between requests doing anything at all, restarts it.
    void rearm(Clock::time_point now, const Timeouts& timeouts);

    Fd fd;
    Session session;
    Want want;                   // what the loop watches for it now
    Clock::time_point deadline;  // closed by the sweep after this

private:
    bool mid_ = false;            // mid_request() when the deadline was last set
    std::uint64_t answered_ = 0;  // answered() then
};

class ConnTable {
public:
    Conn& add(Fd fd, Mode mode, Stats& stats);
    Conn* find(int fd) noexcept {
        return fd >= 0 && std::size_t(fd) < by_fd_.size() ? by_fd_[fd].get() : nullptr;
    }
    // Destroys the Conn: its socket is closed.
    void remove(Conn& conn) noexcept;
    std::size_t size() const noexcept { return count_; }

    // Calls f(Conn&) for every connection; f may remove the one it is given.
    template <class F>
    void for_each(F f) {
        for (std::size_t fd = 0; fd < by_fd_.size(); ++fd)
            if (Conn* c = by_fd_[fd].get()) f(*c);
    }

    // Calls close(Conn&) for every connection past its deadline.
    template <class Close>
    void close_expired(Clock::time_point now, Close close) {
        for_each([&](Conn& c) {
            if (now >= c.deadline) close(c);
        });
    }

    // For a graceful stop: calls close(Conn&) for every connection that has
    // nothing in flight (no answer waiting to be sent, no request half read,
    // no request sitting unread in the socket because the loop was busy).
    // True when no connection is left.
    template <class Close>
    bool close_quiet(Close close) {
        for_each([&](Conn& c) {
            if (c.session.output().empty() && !c.session.mid_request() &&
                unread_bytes(c.fd) == 0)
                close(c);
        });
        return count_ == 0;
    }

private:
    std::vector<std::unique_ptr<Conn>> by_fd_;
    std::size_t count_ = 0;
};

// Graceful stop for one event loop. Once stop_requested(), the loop stops
// watching its listener and stop_fd() (stopping() turns true), connections
// with nothing in flight are closed at once, and the rest get up to kTime
// to receive their answers.
class Drain {
public:
    static constexpr std::chrono::seconds kTime{2};

    bool stopping() const noexcept { return stopping_; }

    // True when the loop should return.
    template <class Close>
    bool finished(ConnTable& conns, Close close) {
        return finished(conns, close, [] {});
    }

    // The same; on the pass the stop begins, take_queue() first accepts the
    // clients already in the listener's queue: their handshake is done and
    // their request may be sent, and closing the listener would reset them.
    // Accepted, they are served like every other connection in flight.
    template <class Close, class TakeQueue>
    bool finished(ConnTable& conns, Close close, TakeQueue take_queue) {
        if (!stop_requested()) return false;
        auto now = Clock::now();
        if (!stopping_) {
            stopping_ = true;
            give_up_ = now + kTime;
            take_queue();
        }
        return conns.close_quiet(close) || now >= give_up_;
    }

private:
    bool stopping_ = false;
    Clock::time_point give_up_;
};

}  // namespace ladder

// conn.h — the connections of one event loop (steps 03 onwards).
//
// A Conn is one client: its socket, its protocol session, what it is
// waiting for, and when it expires. A ConnTable holds a loop's Conns indexed
// by descriptor: the kernel hands out the lowest free number, so the table
// stays dense and finding a connection from an event is one index. The
// table also files each Conn in a TimerWheel (timeouts.h) by its deadline,
// so close_expired() looks only at the connections whose second has come.
//
// Thread rule: a ConnTable and its Conns belong to one loop thread.
#pragma once

#include "fd.h"
#include "session.h"
#include "signals.h"
#include "timeouts.h"

#include <memory>
#include <vector>

namespace ladder {

struct Conn : private TimerWheel::Link {
    Conn(Fd socket, Mode mode, Stats& stats) : fd(std::move(socket)), session(mode, stats) {}

    // Moves the deadline after progress. The header clock starts when a
    // request begins, and more bytes of that same request do not wind it
    // back (one byte a second is slowloris); an answered request, or a
    // connection between requests doing anything at all, restarts it.
    void rearm(Clock::time_point now, const Timeouts& timeouts);

    Fd fd;
    Session session;
    Want want;  // what the loop watches for it now
    // Closed by the sweep after this. Assigning a later deadline is free:
    // the wheel keeps the connection where it is filed, and the sweep that
    // reaches it there files it again by this value (once per timeout, not
    // once per request). A deadline moved earlier is filed again by rearm().
    Clock::time_point deadline;
    // Names this connection in its table: the kernel hands a closed
    // connection's fd number to the next client, the serial is never reused.
    std::uint64_t serial = 0;

private:
    friend class ConnTable;
    TimerWheel* wheel_ = nullptr;  // its table's, or none (a Conn of its own)
    bool mid_ = false;             // mid_request() when the deadline was last set
    std::uint64_t answered_ = 0;   // answered() then
};

class ConnTable {
public:
    ConnTable() : wheel_(std::make_unique<TimerWheel>()) {}

    // The new Conn is looked at by the next sweep, which files it by the
    // deadline given to it meanwhile.
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

    // Calls close(Conn&) for every connection past its deadline. Looks only
    // at the connections filed under the seconds up to now's: the expired
    // ones, and those whose deadline has moved later since they were filed
    // (filed again, by it). A connection that close() leaves in the table
    // (closing asynchronously) is looked at again by the next sweep.
    template <class Close>
    void close_expired(Clock::time_point now, Close close) {
        wheel_->advance(now, [&](TimerWheel::Link& link) {
            Conn& c = static_cast<Conn&>(link);
            if (now < c.deadline) return wheel_->file(c, c.deadline);
            visiting_ = &c;  // remove() forgets it
            close(c);
            if (visiting_ == &c) wheel_->file(c, now + std::chrono::seconds(1));
            visiting_ = nullptr;
        });
    }
    // What the sweeps have cost so far: entries looked at, slots taken.
    const TimerWheel& wheel() const noexcept { return *wheel_; }

    // For a graceful stop: calls close(Conn&) for every connection that has
    // nothing in flight (no answer waiting to be sent, no request half read,
    // no request sitting unread in the socket because the loop was busy).
    // True when no connection is left.
    template <class Close>
    bool close_quiet(Close close) {
        for_each([&](Conn& c) {
            if (c.session.output().empty() && !c.session.mid_request() && !has_unread_bytes(c.fd))
                close(c);
        });
        return count_ == 0;
    }

private:
    static bool has_unread_bytes(FdRef fd) noexcept;  // FIONREAD: bytes no read() has taken

    // On the heap: Conns point to it, and a (still empty) table may be
    // moved. Declared before by_fd_, so the Conns leave it before it goes.
    std::unique_ptr<TimerWheel> wheel_;
    std::vector<std::unique_ptr<Conn>> by_fd_;
    std::size_t count_ = 0;
    std::uint64_t serials_ = 0;
    Conn* visiting_ = nullptr;  // the one close_expired() is closing
};

// Graceful stop for one event loop (common/signals.h has the timeline).
// On the pass a stop is first seen, take_queue() accepts the clients already
// in the listener's queue: their handshake is done and their request may be
// sent, and closing the listener would reset them. From then on the loop
// stops watching its listener, connections with nothing in flight are closed
// at once, and the rest are served until they are quiet too, or until
// kGiveUpTime after the stop, when the loop returns and what is left closes.
class Drain {
public:
    bool stopping() const noexcept { return stopping_; }

    // True when the loop should return.
    template <class Close, class TakeQueue>
    bool finished(ConnTable& conns, Close close, TakeQueue take_queue) {
        if (!stop_requested()) return false;
        if (!stopping_) {
            stopping_ = true;
            take_queue();
        }
        return conns.close_quiet(close) || drain_given_up();
    }

private:
    bool stopping_ = false;
};

}  // namespace ladder

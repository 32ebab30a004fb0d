// Step 04 — poll(): an array instead of bitmaps.
// Adds:    poll over an array of pollfd (fd, events, revents) instead of three bitmaps.
// Why:     no FD_SETSIZE cap: any descriptor number can be watched.
// Costs:   the array is still copied into the kernel and scanned on every call: O(all fds).
// Observe: make step-04; make test-steps PYTEST_ARGS='-k "04 and 2000"'

#include "conn.h"
#include "error.h"
#include "net.h"
#include "options.h"
#include "signals.h"
#include "stats.h"

#include <algorithm>
#include <cstdio>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

namespace {

using ladder::Clock;
using ladder::Conn;

constexpr ladder::StepInfo kStep{
    .summary = "Step 04 — poll(): one thread watches every socket, no FD_SETSIZE cap.",
};

struct Loop {
    ladder::Fd listener;
    ladder::Mode mode;
    ladder::Stats& stats;
    ladder::Timeouts timeouts;
    ladder::ConnTable conns = {};
};

void close_conn(Loop& loop, Conn& c) {
    ladder::bump(loop.stats.counters().closed);
    loop.conns.remove(c);  // closes the socket
}

// A handler has run: close the connection if it is finished, or remember
// what it waits for next. poll() is told the interest anew on every call.
void rewatch(Loop& loop, Conn& c, ladder::Want want) {
    if (c.session.done()) {
        close_conn(loop, c);
    } else {
        c.want = want;
    }
}

// [snip:accept]
// Takes one client off the accept queue. False when there is none to take now.
bool accept_one(Loop& loop) {
    int fd = ::accept4(loop.listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        if (errno == EAGAIN) return false;  // the queue is empty
        if (errno == EMFILE || errno == ENFILE)
            return ladder::refuse_one_client(loop.listener, errno, loop.stats.counters());
        if (errno == EINTR || ladder::client_gone_before_accept(errno)) return true;
        ladder::throw_sys("accept4");
    }
    ladder::bump(loop.stats.counters().accepted);
    Conn& c = loop.conns.add(ladder::Fd(fd), loop.mode, loop.stats);
    c.deadline = loop.timeouts.deadline(Clock::now(), false);
    return true;
}
// [/snip]

// Level-triggered: clients still queued make the listener ready again on
// the next pass, so one accept per wake-up loses nothing.
void on_accept(Loop& loop) { accept_one(loop); }

// [snip:send]
// Answers what has arrived and sends it, as much as the socket takes now.
// EAGAIN: its send buffer is full; the rest waits for it to be writable.
ladder::Want on_writable(Loop& loop, Conn& c) {
    do {
        c.session.process();
        std::string_view out = c.session.output().readable();
        if (out.empty()) break;
        // MSG_NOSIGNAL: a client that has gone is EPIPE, not a SIGPIPE.
        ssize_t n = ::send(c.fd.get(), out.data(), out.size(), MSG_NOSIGNAL);
        if (n >= 0)
            c.session.output().consume(std::size_t(n));
        else if (errno != EAGAIN && errno != EINTR)
            c.session.abort();  // EPIPE, ECONNRESET: this client only
    } while (c.session.output().empty() && c.session.held_back());
    c.rearm(Clock::now(), loop.timeouts);
    return c.session.want();
}
// [/snip]

// [snip:read]
// One read() into the session's input, its result checked: bytes are kept,
// 0 is the client's FIN, EAGAIN and EINTR leave nothing to do, and any
// other error (ECONNRESET) ends this client only. Returns what read() did.
ssize_t read_input(Conn& c) {
    char* room = c.session.input().writable(ladder::kReadSize).data();
    ssize_t n = ::read(c.fd.get(), room, ladder::kReadSize);
    if (n > 0)
        c.session.input().commit(std::size_t(n));
    else if (n == 0)
        c.session.on_eof();  // answer what is complete, then close
    else if (errno != EAGAIN && errno != EINTR)
        c.session.abort();
    return n;
}

// One read per readiness: while bytes remain the socket stays ready, and the
// next pass reads more. Then answer at once: a socket with room in its send
// buffer takes the answer without waiting for a writable event.
ladder::Want on_readable(Loop& loop, Conn& c) {
    read_input(c);
    return on_writable(loop, c);
}
// [/snip]

// [exercise:stop-queue]
void run(Loop& loop) {
    ladder::Sweep sweep;
    ladder::Drain drain;
    auto close = [&](Conn& c) { close_conn(loop, c); };
    auto take_queue = [&] {
        while (accept_one(loop)) {
        }
    };
    std::vector<pollfd> fds;  // rebuilt every pass; kept to reuse its memory
    while (!drain.finished(loop.conns, close, take_queue)) {
        // [exercise:loop]
        // [snip:poll-loop]
        // poll() writes only revents, but the whole array still crosses into
        // the kernel and is scanned on every call.
        fds.clear();
        if (!drain.stopping()) {
            fds.push_back({loop.listener.get(), POLLIN, 0});
            fds.push_back({ladder::stop_fd(), POLLIN, 0});  // a signalfd: SIGTERM is pending
        }
        loop.conns.for_each([&](Conn& c) {
            short events = static_cast<short>((c.want.read ? POLLIN : 0) |
                                              (c.want.write ? POLLOUT : 0));
            fds.push_back({c.fd.get(), events, 0});
        });
        int wait_ms = sweep.wait_ms(Clock::now());
        int ready = ::poll(fds.data(), fds.size(), wait_ms);
        ladder::bump(loop.stats.counters().wakeups);
        if (ready < 0) {
            if (errno == EINTR) continue;
            ladder::throw_sys("poll");
        }
        // [/snip]
        // [snip:poll-scan]
        // The kernel says how many are ready, not which: scan them all.
        // POLLHUP and POLLERR come whether asked for or not; a read reports them.
        for (const pollfd& p : fds) {
            Conn* c = loop.conns.find(p.fd);
            if (c == nullptr || p.revents == 0) continue;
            if (p.revents & (POLLIN | POLLHUP | POLLERR))
                rewatch(loop, *c, on_readable(loop, *c));
            else
                rewatch(loop, *c, on_writable(loop, *c));
        }
        if (!drain.stopping() && (fds[0].revents & POLLIN)) on_accept(loop);
        if (!drain.stopping() && (fds[1].revents & POLLIN)) ladder::request_stop();
        // [/snip]
        // [/exercise]
        if (Clock::time_point now = Clock::now(); sweep.due(now))
            loop.conns.close_expired(now, [&](Conn& c) {
                ladder::bump(loop.stats.counters().timeouts);
                close_conn(loop, c);
            });
    }
}
// [/exercise]

}  // namespace

int main(int argc, char** argv) try {
    ladder::Timeouts timeouts;
    std::vector<ladder::Flag> flags = timeouts.flags();
    ladder::Options options = ladder::parse_options(argc, argv, kStep, flags);
    ladder::install_stop_handlers();
    ladder::raise_fd_limit();
    ladder::Stats stats(kStep.number, ladder::to_string(options.mode));
    Loop loop{.listener = ladder::listen_tcp(options.host, options.port, true),
              .mode = options.mode, .stats = stats, .timeouts = timeouts};
    ladder::announce_listening(loop.listener);
    run(loop);
    std::printf("%s\n", stats.json().c_str());
    return 0;
} catch (const std::exception& e) {
    return ladder::report_fatal(kStep.program, e);
}

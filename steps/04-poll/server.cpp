// Step 04 — poll(): an array instead of bitmaps.
// Adds:    a pollfd array (fd, events, revents) in place of the three fd_sets.
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
#include <vector>

namespace {

using ladder::Clock;
using ladder::Conn;
using ladder::IoResult;

constexpr ladder::StepInfo kStep{
    .program = "step-04",
    .summary = "Step 04 — poll(): one thread watches every socket, no FD_SETSIZE cap.",
};

struct Loop {
    ladder::Fd listener;
    ladder::Mode mode;
    ladder::Stats& stats;
    ladder::Timeouts timeouts;
    ladder::ConnTable conns;
    std::vector<pollfd> pollfds;  // rebuilt every pass; kept to reuse its memory
};

void close_conn(Loop& loop, Conn& c) {
    ladder::bump(loop.stats.counters().closed);
    loop.conns.remove(c);  // closes the socket
}

// Takes one client off the accept queue. False when the queue was empty.
bool accept_one(Loop& loop) {
    bool refused = false;
    std::optional<ladder::Fd> fd = ladder::try_accept(loop.listener, true, &refused);
    if (refused) ladder::bump(loop.stats.counters().refused);
    if (!fd) return refused;
    ladder::bump(loop.stats.counters().accepted);
    Conn& c = loop.conns.add(std::move(*fd), loop.mode, loop.stats);
    c.deadline = loop.timeouts.deadline(Clock::now(), false);
    return true;
}

// Level-triggered: clients still queued make the listener ready again on
// the next pass, so one accept per wake-up loses nothing.
void on_accept(Loop& loop) { accept_one(loop); }

// One read per readiness: while bytes remain the socket stays ready, and the
// next pass reads more. c.answer() runs the protocol and writes what the
// socket takes now (common/conn.h).
ladder::Want on_readable(Loop& loop, Conn& c) {
    IoResult r = ladder::read_some(c.fd, c.session.input());
    if (r.kind == IoResult::eof)
        c.session.on_eof();
    else if (r.kind == IoResult::error)
        c.session.abort();
    return c.answer(loop.timeouts);
}

ladder::Want on_writable(Loop& loop, Conn& c) { return c.answer(loop.timeouts); }

void run(Loop& loop) {
    ladder::Sweep sweep;
    ladder::Drain drain;
    auto close = [&](Conn& c) { close_conn(loop, c); };
    auto take_queue = [&] {
        while (accept_one(loop)) {
        }
    };
    while (!drain.finished(loop.conns, close, take_queue)) {
        // [snip:poll-loop]
        // poll() writes only revents, but the whole array still crosses into
        // the kernel and is scanned on every call.
        std::vector<pollfd>& fds = loop.pollfds;
        fds.clear();
        if (!drain.stopping()) {
            fds.push_back({loop.listener.get(), POLLIN, 0});
            fds.push_back({ladder::stop_fd(), POLLIN, 0});
        }
        loop.conns.for_each([&](Conn& c) {
            short events = static_cast<short>((c.want.read ? POLLIN : 0) |
                                              (c.want.write ? POLLOUT : 0));
            fds.push_back({c.fd.get(), events, 0});
        });
        int ready = ::poll(fds.data(), fds.size(), sweep.wait_ms(Clock::now()));
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
            if (!c || p.revents == 0) continue;
            if (p.revents & (POLLIN | POLLHUP | POLLERR))
                c->want = on_readable(loop, *c);
            else
                c->want = on_writable(loop, *c);
            if (c->session.done()) close_conn(loop, *c);
        }
        if (!drain.stopping() && (fds[0].revents & POLLIN)) on_accept(loop);
        // [/snip]
        if (Clock::time_point now = Clock::now(); sweep.due(now))
            loop.conns.close_expired(now, [&](Conn& c) {
                ladder::bump(loop.stats.counters().timeouts);
                close_conn(loop, c);
            });
    }
}

}  // namespace

int main(int argc, char** argv) try {
    ladder::Timeouts timeouts;
    ladder::Options options = ladder::parse_options(argc, argv, kStep, timeouts.flags());
    ladder::install_stop_handlers();
    ladder::raise_fd_limit();
    ladder::Stats stats("04", ladder::to_string(options.mode));
    Loop loop{.listener = ladder::listen_tcp(
                  {.host = options.host, .port = options.port, .nonblocking = true}),
              .mode = options.mode, .stats = stats, .timeouts = timeouts, .conns = {},
              .pollfds = {}};
    ladder::announce_listening(loop.listener);
    run(loop);
    std::printf("%s\n", loop.stats.json().c_str());
    return 0;
} catch (const std::exception& e) {
    return ladder::report_fatal(kStep.program, e);
}

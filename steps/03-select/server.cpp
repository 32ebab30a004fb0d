// Step 03 — select(): one thread, many clients.
// Adds:    non-blocking sockets; select() over fd_sets; on_accept / on_readable / on_writable.
// Why:     the thread sleeps until *any* socket is ready, so no client waits on another.
// Costs:   every call copies and scans all the fds, ready or not; fds >= FD_SETSIZE can't be watched.
// Observe: make step-03; make test-steps PYTEST_ARGS='-k "03 and fd_setsize"'

#include "conn.h"
#include "error.h"
#include "net.h"
#include "options.h"
#include "signals.h"
#include "stats.h"

#include <algorithm>
#include <cstdio>
#include <sys/select.h>

namespace {

using ladder::Clock;
using ladder::Conn;
using ladder::IoResult;

constexpr ladder::StepInfo kStep{
    .program = "step-03",
    .summary = "Step 03 — select(): one thread watches every socket.",
};

struct Loop {
    ladder::Fd listener;
    ladder::Mode mode;
    ladder::Stats& stats;
    ladder::Timeouts timeouts;
    ladder::ConnTable conns;
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
    // [snip:fd-setsize]
    // fd_set is a fixed bitmap of FD_SETSIZE (1024) bits: FD_SET on a larger
    // descriptor writes past its end. Refuse the client instead.
    if (fd->get() >= FD_SETSIZE) {
        std::fprintf(stderr, "step-03: fd %d >= FD_SETSIZE (%d): select() cannot watch it; "
                     "closing that client\n", fd->get(), FD_SETSIZE);
        ladder::bump(loop.stats.counters().refused);
        ladder::bump(loop.stats.counters().closed);
        return true;
    }
    // [/snip]
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
        // [snip:select-loop]
        // select() overwrites the sets with the ready subset, so they are
        // rebuilt from every connection's Want on every pass.
        fd_set readable, writable;
        FD_ZERO(&readable);
        FD_ZERO(&writable);
        int max_fd = -1;
        if (!drain.stopping()) {
            FD_SET(loop.listener.get(), &readable);
            FD_SET(ladder::stop_fd(), &readable);
            max_fd = std::max(loop.listener.get(), ladder::stop_fd());
        }
        loop.conns.for_each([&](Conn& c) {
            if (c.want.read) FD_SET(c.fd.get(), &readable);
            if (c.want.write) FD_SET(c.fd.get(), &writable);
            max_fd = std::max(max_fd, c.fd.get());
        });
        int wait_ms = sweep.wait_ms(Clock::now());
        timeval timeout{wait_ms / 1000, (wait_ms % 1000) * 1000L};
        int ready = ::select(max_fd + 1, &readable, &writable, nullptr, &timeout);
        ladder::bump(loop.stats.counters().wakeups);
        if (ready < 0) {
            if (errno == EINTR) continue;
            ladder::throw_sys("select");
        }
        // [/snip]
        // [snip:select-scan]
        // The kernel says how many are ready, not which: scan them all.
        loop.conns.for_each([&](Conn& c) {
            int fd = c.fd.get();
            if (FD_ISSET(fd, &readable))
                c.want = on_readable(loop, c);
            else if (FD_ISSET(fd, &writable))
                c.want = on_writable(loop, c);
            else
                return;
            if (c.session.done()) close_conn(loop, c);
        });
        if (!drain.stopping() && FD_ISSET(loop.listener.get(), &readable)) on_accept(loop);
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
    ladder::Stats stats("03", ladder::to_string(options.mode));
    Loop loop{.listener = ladder::listen_tcp(
                  {.host = options.host, .port = options.port, .nonblocking = true}),
              .mode = options.mode, .stats = stats, .timeouts = timeouts, .conns = {}};
    ladder::announce_listening(loop.listener);
    run(loop);
    std::printf("%s\n", loop.stats.json().c_str());
    return 0;
} catch (const std::exception& e) {
    return ladder::report_fatal(kStep.program, e);
}

// Step 05 — epoll, level-triggered.
// Adds:    epoll_create1; epoll_ctl when a connection's interest changes; epoll_wait.
// Why:     the kernel keeps the interest list, so a wait returns only the ready fds: O(ready).
// Costs:   an epoll_ctl call whenever interest changes; still one thread for all clients.
// Observe: make step-05; make test-steps PYTEST_ARGS='-k "05 and burst"'

#include "conn.h"
#include "error.h"
#include "net.h"
#include "options.h"
#include "signals.h"
#include "stats.h"

#include <algorithm>
#include <cstdio>
#include <sys/epoll.h>

namespace {

using ladder::Clock;
using ladder::Conn;
using ladder::IoResult;

constexpr ladder::StepInfo kStep{
    .program = "step-05",
    .summary = "Step 05 — epoll, level-triggered: the kernel keeps the interest list.",
};
constexpr int kMaxEvents = 256;  // ready fds taken per epoll_wait; the rest wait for the next

struct Loop {
    ladder::Fd listener;
    ladder::Mode mode;
    ladder::Stats& stats;
    ladder::Timeouts timeouts;
    ladder::ConnTable conns;
    ladder::Fd epoll;
};

std::uint32_t events_for(ladder::Want want) {
    return (want.read ? EPOLLIN : 0u) | (want.write ? EPOLLOUT : 0u);
}

// [snip:epoll-ctl]
// Tells the kernel what to watch on `fd`: EPOLL_CTL_ADD, _MOD or _DEL.
void watch(Loop& loop, int op, int fd, std::uint32_t events) {
    epoll_event ev{.events = events, .data = {.fd = fd}};
    if (::epoll_ctl(loop.epoll.get(), op, fd, &ev) != 0)
        ladder::throw_sys("epoll_ctl(fd " + std::to_string(fd) + ")");
}

// The interest list lives in the kernel: change it only when the Want does.
void rewatch(Loop& loop, Conn& c, ladder::Want want) {
    if (want.read != c.want.read || want.write != c.want.write)
        watch(loop, EPOLL_CTL_MOD, c.fd.get(), events_for(want));
    c.want = want;
}
// [/snip]

void close_conn(Loop& loop, Conn& c) {
    ladder::bump(loop.stats.counters().closed);
    loop.conns.remove(c);  // closing the socket also takes it off the epoll list
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
    watch(loop, EPOLL_CTL_ADD, c.fd.get(), events_for(c.want));
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
        // [snip:epoll-wait]
        epoll_event events[kMaxEvents];
        int ready = ::epoll_wait(loop.epoll.get(), events, kMaxEvents,
                                 sweep.wait_ms(Clock::now()));
        ladder::bump(loop.stats.counters().wakeups);
        if (ready < 0) {
            if (errno == EINTR) continue;
            ladder::throw_sys("epoll_wait");
        }
        // Only ready descriptors come back: no scan over the idle ones.
        for (int i = 0; i < ready; ++i) {
            int fd = events[i].data.fd;
            if (fd == loop.listener.get()) {
                on_accept(loop);
            } else if (fd == ladder::stop_fd()) {
                watch(loop, EPOLL_CTL_DEL, loop.listener.get(), 0);  // no new clients
                watch(loop, EPOLL_CTL_DEL, fd, 0);  // it stays readable: stop watching
            } else if (Conn* c = loop.conns.find(fd)) {
                ladder::Want want = (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                                        ? on_readable(loop, *c)
                                        : on_writable(loop, *c);
                if (c->session.done())
                    close_conn(loop, *c);
                else
                    rewatch(loop, *c, want);
            }
        }
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
    ladder::Stats stats("05", ladder::to_string(options.mode));
    Loop loop{.listener = ladder::listen_tcp(
                  {.host = options.host, .port = options.port, .nonblocking = true}),
              .mode = options.mode, .stats = stats, .timeouts = timeouts, .conns = {},
              .epoll = ladder::Fd(::epoll_create1(EPOLL_CLOEXEC))};
    if (!loop.epoll) ladder::throw_sys("epoll_create1");
    watch(loop, EPOLL_CTL_ADD, loop.listener.get(), EPOLLIN);
    watch(loop, EPOLL_CTL_ADD, ladder::stop_fd(), EPOLLIN);
    ladder::announce_listening(loop.listener);
    run(loop);
    std::printf("%s\n", loop.stats.json().c_str());
    return 0;
} catch (const std::exception& e) {
    return ladder::report_fatal(kStep.program, e);
}

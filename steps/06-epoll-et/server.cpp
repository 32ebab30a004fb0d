// Step 06 — epoll, edge-triggered.
// Adds:    EPOLLET; accept and read loops that drain the socket (EAGAIN or a short read).
// Why:     one wake-up per readiness change: fewer epoll_wait returns.
// Costs:   stop before EAGAIN and the connection stalls: no second edge (see --naive-et).
// Observe: make step-06; make test-steps PYTEST_ARGS='-k "06 and drain"'

#include "conn.h"
#include "error.h"
#include "net.h"
#include "options.h"
#include "signals.h"
#include "stats.h"

#include <algorithm>
#include <cstdio>
#include <sys/epoll.h>
#include <vector>

namespace {

using ladder::Clock;
using ladder::Conn;
using ladder::IoResult;

constexpr ladder::StepInfo kStep{
    .program = "step-06",
    .summary = "Step 06 — epoll, edge-triggered: read and accept until EAGAIN.",
};
constexpr int kMaxEvents = 256;  // ready fds taken per epoll_wait; the rest wait for the next

struct Loop {
    ladder::Fd listener;
    ladder::Mode mode;
    ladder::Stats& stats;
    ladder::Timeouts timeouts;
    ladder::ConnTable conns;
    ladder::Fd epoll;
    bool naive_et = false;  // teaching aid: one read per event, the classic ET bug
};

// EPOLLRDHUP: the event says when the peer has sent its FIN (on_readable
// needs to know).
std::uint32_t events_for(ladder::Want want) {
    return EPOLLET | EPOLLRDHUP | (want.read ? EPOLLIN : 0u) | (want.write ? EPOLLOUT : 0u);
}

// [snip:epoll-ctl]
// Tells the kernel what to watch on `fd`: EPOLL_CTL_ADD, _MOD or _DEL.
void watch(Loop& loop, int op, int fd, std::uint32_t events) {
    epoll_event ev{.events = events, .data = {.fd = fd}};
    if (::epoll_ctl(loop.epoll.get(), op, fd, &ev) != 0)
        ladder::throw_sys("epoll_ctl(fd " + std::to_string(fd) + ")");
}

// The interest list lives in the kernel: change it only when the Want does.
// EPOLL_CTL_MOD also re-checks readiness, so input left unread while the
// session was not reading (output above its high-water mark) raises a new
// edge the moment reading is wanted again.
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

// [snip:et-drain]
// Edge-triggered: the listener reports one edge for a burst of clients, so
// take them all now; one left in the queue would wait for the next connect.
void on_accept(Loop& loop) {
    while (accept_one(loop)) {
    }
}

// ET reports a change, not a state: read until the socket is empty (or
// until the session stops reading), or bytes already in it never wake us
// again. Empty means EAGAIN — or a short read: read() hands over all the
// socket holds, so getting less than asked proves it empty, and any byte
// arriving later is a change, a new edge. That saves the read that only
// says EAGAIN: one system call in three per request. The exception is a FIN
// that came with the bytes (`peer_closed`): it raises no edge of its own,
// so read on to the end-of-file.
ladder::Want on_readable(Loop& loop, Conn& c, bool peer_closed) {
    for (;;) {
        IoResult r = ladder::read_some(c.fd, c.session.input());
        if (r.kind == IoResult::eof)
            c.session.on_eof();
        else if (r.kind == IoResult::error)
            c.session.abort();
        ladder::Want want = c.answer(loop.timeouts);
        if (r.kind != IoResult::ok || !want.read || loop.naive_et) return want;
        if (r.drained && !peer_closed) return want;
    }
}
// [/snip]

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
                std::uint32_t got = events[i].events;
                ladder::Want want =
                    (got & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                        ? on_readable(loop, *c, got & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
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
    bool naive_et = false;
    std::vector<ladder::Flag> flags = timeouts.flags();
    flags.push_back({.name = "naive-et",
                     .help = "teaching aid: read once per event, and watch it stall",
                     .target = &naive_et});
    ladder::Options options = ladder::parse_options(argc, argv, kStep, flags);
    ladder::install_stop_handlers();
    ladder::raise_fd_limit();
    ladder::Stats stats("06", ladder::to_string(options.mode));
    Loop loop{.listener = ladder::listen_tcp(
                  {.host = options.host, .port = options.port, .nonblocking = true}),
              .mode = options.mode, .stats = stats, .timeouts = timeouts, .conns = {},
              .epoll = ladder::Fd(::epoll_create1(EPOLL_CLOEXEC)), .naive_et = naive_et};
    if (!loop.epoll) ladder::throw_sys("epoll_create1");
    watch(loop, EPOLL_CTL_ADD, loop.listener.get(), EPOLLIN | EPOLLET);
    watch(loop, EPOLL_CTL_ADD, ladder::stop_fd(), EPOLLIN);
    ladder::announce_listening(loop.listener);
    run(loop);
    std::printf("%s\n", loop.stats.json().c_str());
    return 0;
} catch (const std::exception& e) {
    return ladder::report_fatal(kStep.program, e);
}

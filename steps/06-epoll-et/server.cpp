// Step 06 — epoll, edge-triggered.
// Adds:    EPOLLET; accept4 until EAGAIN, and read until -1 with errno EAGAIN.
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
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

namespace {

using ladder::Clock;
using ladder::Conn;

constexpr ladder::StepInfo kStep{
    .summary = "Step 06 — epoll, edge-triggered: read and accept until EAGAIN.",
};
constexpr int kMaxEvents = 256;  // ready fds taken per epoll_wait; the rest wait for the next

struct Loop {
    ladder::Fd listener;
    ladder::Mode mode;
    ladder::Stats& stats;
    ladder::Timeouts timeouts;
    ladder::Fd epoll{::epoll_create1(EPOLL_CLOEXEC)};  // the interest list, in the kernel
    ladder::ConnTable conns = {};
    bool naive_et = false;  // teaching aid: one read per event, the classic ET bug
};

// EPOLLET: report a change of readiness once, not the state on every wait.
std::uint32_t events_for(ladder::Want want) {
    return EPOLLET | (want.read ? EPOLLIN : 0u) | (want.write ? EPOLLOUT : 0u);
}

// [snip:epoll-ctl]
// Tells the kernel what to watch on `fd`: EPOLL_CTL_ADD, _MOD or _DEL.
void watch(Loop& loop, int op, int fd, std::uint32_t events) {
    epoll_event ev{.events = events, .data = {.fd = fd}};
    if (::epoll_ctl(loop.epoll.get(), op, fd, &ev) != 0)
        ladder::throw_sys("epoll_ctl(fd " + std::to_string(fd) + ")");
}

// Closing a socket also takes it off every epoll interest list.
void close_conn(Loop& loop, Conn& c) {
    ladder::bump(loop.stats.counters().closed);
    loop.conns.remove(c);  // closes the socket
}

// A handler has run: close the connection if it is finished, or tell the
// kernel what it waits for next. The interest list lives in the kernel:
// change it only when the Want does. EPOLLOUT only while output waits: a
// socket with room in its send buffer is writable nearly always.
// EPOLL_CTL_MOD also re-checks readiness: input left unread while the
// session was not reading (its output above the high-water mark) raises a
// new edge the moment reading is wanted again.
void rewatch(Loop& loop, Conn& c, ladder::Want want) {
    if (c.session.done()) {
        close_conn(loop, c);
    } else {
        if (want.read != c.want.read || want.write != c.want.write)
            watch(loop, EPOLL_CTL_MOD, c.fd.get(), events_for(want));
        c.want = want;
    }
}
// [/snip]

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
    watch(loop, EPOLL_CTL_ADD, fd, events_for(c.want));
    return true;
}
// [/snip]

// [exercise:accept-drain]
// [snip:et-accept]
// Edge-triggered: the listener reports one edge for a burst of clients, so
// take them all, until accept4() says EAGAIN; a client left in the queue
// would wait for the next one to connect.
void on_accept(Loop& loop) {
    while (accept_one(loop)) {
    }
}
// [/snip]
// [/exercise]

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

// [exercise:drain]
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

// [snip:et-drain]
// ET reports a change, not a state: read until read() fails with EAGAIN, or
// bytes already in the socket never wake us again. Answer after each read:
// a client that sends without pause is answered as it goes, and stops being
// read once its answers pile up (want.read turns false).
ladder::Want on_readable(Loop& loop, Conn& c) {
    for (;;) {
        ssize_t n = read_input(c);
        bool empty = n < 0 && errno == EAGAIN;  // the next byte to arrive is a new edge
        ladder::Want want = on_writable(loop, c);
        if (empty || !want.read || loop.naive_et) return want;
    }
}
// [/snip]
// [/snip]
// [/exercise]

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
        int wait_ms = sweep.wait_ms(Clock::now());
        int ready = ::epoll_wait(loop.epoll.get(), events, kMaxEvents, wait_ms);
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
            } else if (fd == ladder::stop_fd()) {  // a signalfd: SIGTERM is pending
                ladder::request_stop();
                watch(loop, EPOLL_CTL_DEL, loop.listener.get(), 0);  // no new clients
                watch(loop, EPOLL_CTL_DEL, fd, 0);  // it stays readable: stop watching
            } else if (Conn* c = loop.conns.find(fd)) {
                // EPOLLHUP and EPOLLERR come whether asked for or not; a read reports them.
                if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                    rewatch(loop, *c, on_readable(loop, *c));
                else
                    rewatch(loop, *c, on_writable(loop, *c));
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
    std::vector<ladder::Flag> flags = timeouts.flags();
    bool naive_et = false;
    flags.push_back({.name = "naive-et",
                     .help = "teaching aid: read once per event, and watch it stall",
                     .target = &naive_et});
    ladder::Options options = ladder::parse_options(argc, argv, kStep, flags);
    ladder::install_stop_handlers();
    ladder::raise_fd_limit();
    ladder::Stats stats(kStep.number, ladder::to_string(options.mode));
    Loop loop{.listener = ladder::listen_tcp(options.host, options.port, true),
              .mode = options.mode, .stats = stats, .timeouts = timeouts,
              .naive_et = naive_et};
    if (!loop.epoll) ladder::throw_sys("epoll_create1");
    watch(loop, EPOLL_CTL_ADD, loop.listener.get(), EPOLLIN | EPOLLET);
    watch(loop, EPOLL_CTL_ADD, ladder::stop_fd(), EPOLLIN);
    ladder::announce_listening(loop.listener);
    run(loop);
    std::printf("%s\n", stats.json().c_str());
    return 0;
} catch (const std::exception& e) {
    return ladder::report_fatal(kStep.program, e);
}

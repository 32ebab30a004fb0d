// Step 08 — SO_REUSEPORT: a listener and a loop per worker.
// Adds:    --workers N threads, each step 06's loop on its own listener: SO_REUSEPORT, bind per worker.
// Why:     the kernel hashes each new connection to one listener: one queue, one waiter.
// Costs:   each listener queues its own clients: close it and those are reset, not moved.
// Observe: make step-08; make test-steps PYTEST_ARGS='-k "08 and reuseport"'

#include "conn.h"
#include "error.h"
#include "net.h"
#include "options.h"
#include "signals.h"
#include "stats.h"

#include <algorithm>
#include <cstdio>
#include <exception>
#include <memory>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

using ladder::Clock;
using ladder::Conn;

constexpr ladder::StepInfo kStep{
    .summary = "Step 08 — SO_REUSEPORT: N workers, each with its own listener and loop.",
    .has_workers = true,
};
constexpr int kMaxEvents = 256;  // ready fds taken per epoll_wait; the rest wait for the next

struct Loop {
    ladder::Fd listener;
    ladder::Mode mode;
    ladder::Stats& stats;
    ladder::Timeouts timeouts;
    ladder::WorkerCounters& worker;  // this loop's own counts, in stats
    ladder::Fd epoll{::epoll_create1(EPOLL_CLOEXEC)};  // the interest list, in the kernel
    ladder::ConnTable conns = {};
};

// EPOLLET: report a change of readiness once, not the state on every wait.
// EPOLLRDHUP: say so when the client's FIN has arrived (on_readable needs it).
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
        if (errno == EMFILE || errno == ENFILE) {
            if (ladder::refuse_one_client(loop.listener, errno, loop.stats.counters()))
                return true;
            // Not refused: another worker took the client, or no thread
            // could be had for the refusal; and clients still
            // queued would wait for an edge that never comes. EPOLL_CTL_MOD
            // re-arms the listener: a queue not yet empty is reported again.
            if (!ladder::stop_requested())
                watch(loop, EPOLL_CTL_MOD, loop.listener.get(), EPOLLIN | EPOLLET);
            return false;
        }
        if (errno == EINTR || ladder::client_gone_before_accept(errno)) return true;
        ladder::throw_sys("accept4");
    }
    ladder::bump(loop.stats.counters().accepted);
    ladder::bump(loop.worker.accepted);
    ladder::bump(loop.worker.connections);
    Conn& c = loop.conns.add(ladder::Fd(fd), loop.mode, loop.stats);
    c.session.count_requests_in(&loop.worker.requests);
    c.deadline = loop.timeouts.deadline(Clock::now(), false);
    watch(loop, EPOLL_CTL_ADD, fd, events_for(c.want));
    return true;
}
// [/snip]

// [snip:et-accept]
// Edge-triggered: the listener reports one edge for a burst of clients, so
// take them all, until accept4() says EAGAIN; a client left in the queue
// would wait for the next one to connect.
void on_accept(Loop& loop) {
    while (accept_one(loop)) {
    }
}
// [/snip]

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

// [exercise:short-read]
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

// [snip:short-read]
// Edge-triggered, as in step 06, with nginx's shortcut: a read that returns
// less than it asked for has emptied the socket (a stream socket hands over
// all it holds), so the read that would only say EAGAIN is skipped — one
// system call of three per request. A FIN that came with those bytes raises
// no edge of its own: EPOLLRDHUP said it came (peer_closed), so read on to
// the end-of-file.
ladder::Want on_readable(Loop& loop, Conn& c, bool peer_closed) {
    for (;;) {
        ssize_t n = read_input(c);
        bool empty = (n < 0 && errno == EAGAIN) ||
                     (n > 0 && std::size_t(n) < ladder::kReadSize && !peer_closed);
        ladder::Want want = on_writable(loop, c);
        if (empty || !want.read) return want;
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
        ladder::bump(loop.worker.wakeups);
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
                std::uint32_t closed = events[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR);
                if ((events[i].events & EPOLLIN) || closed)
                    rewatch(loop, *c, on_readable(loop, *c, closed != 0));
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

// [exercise:reuseport]
// [snip:reuseport]
// Worker i's listener. SO_REUSEPORT, set before bind(), lets every worker
// bind the same address: the kernel keeps the listeners in one group and
// hashes each new connection (addresses and ports) to one of them, whose
// own accept queue and own waiter get it. Step 01's socket, bind, listen.
ladder::Fd open_listener(const ladder::Options& options, std::uint16_t port) {
    ladder::Address addr = ladder::parse_address(options.host, port);
    ladder::Fd fd(::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) ladder::throw_sys("socket", errno, ladder::hint_for(errno));
    int on = 1;
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0)
        ladder::throw_sys("setsockopt(SO_REUSEADDR)");
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0)
        ladder::throw_sys("setsockopt(SO_REUSEPORT)");
    if (::bind(fd.get(), addr.get(), addr.length) != 0)
        ladder::throw_sys("bind(" + addr.text + ")", errno, ladder::hint_for(errno));
    if (::listen(fd.get(), ladder::kBacklog) != 0)
        ladder::throw_sys("listen(" + addr.text + ")");
    return fd;
}
// [/snip]
// [/exercise]

// One thread per loop; they share nothing but the counters. A loop that
// fails stops the server, and main reports why.
void run_workers(std::vector<std::unique_ptr<Loop>>& loops) {
    std::vector<std::exception_ptr> failures(loops.size() + 1);
    std::vector<std::thread> threads;
    try {
        for (std::size_t i = 0; i < loops.size(); ++i)
            threads.emplace_back([&loops, &failures, i] {
                try {
                    run(*loops[i]);
                } catch (...) {
                    failures[i] = std::current_exception();
                    ladder::request_stop();
                }
            });
    } catch (...) {
        failures.back() = std::current_exception();  // a thread could not start
        ladder::request_stop();
    }
    for (std::thread& t : threads) t.join();
    for (std::exception_ptr& f : failures)
        if (f) std::rethrow_exception(f);
}

}  // namespace

int main(int argc, char** argv) try {
    ladder::Timeouts timeouts;
    std::vector<ladder::Flag> flags = timeouts.flags();
    ladder::Options options = ladder::parse_options(argc, argv, kStep, flags);
    // One loop per CPU by default, as nginx's worker_processes auto.
    int workers = options.workers ? options.workers : ladder::usable_cpus();
    ladder::install_stop_handlers();
    ladder::raise_fd_limit();
    ladder::Stats stats(kStep.number, ladder::to_string(options.mode), workers);
    std::vector<std::unique_ptr<Loop>> loops;
    for (int i = 0; i < workers; ++i) {
        // With --port 0 the first listener gets a port; the others join it.
        std::uint16_t port = i == 0 ? options.port : ladder::local_port(loops[0]->listener);
        loops.push_back(std::make_unique<Loop>(Loop{
            .listener = open_listener(options, port), .mode = options.mode, .stats = stats,
            .timeouts = timeouts, .worker = stats.worker(i)}));
        Loop& loop = *loops.back();
        if (!loop.epoll) ladder::throw_sys("epoll_create1");
        watch(loop, EPOLL_CTL_ADD, loop.listener.get(), EPOLLIN | EPOLLET);
        watch(loop, EPOLL_CTL_ADD, ladder::stop_fd(), EPOLLIN);
    }
    ladder::announce_listening(loops[0]->listener);
    run_workers(loops);
    std::printf("%s\n", stats.json().c_str());
    return 0;
} catch (const std::exception& e) {
    return ladder::report_fatal(kStep.program, e);
}

// Step 08 — SO_REUSEPORT: a listener and a loop per worker.
// Adds:    --workers N threads, each step 06's loop on its own SO_REUSEPORT listener.
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
#include <thread>
#include <vector>

namespace {

using ladder::Clock;
using ladder::Conn;
using ladder::IoResult;

constexpr ladder::StepInfo kStep{
    .program = "step-08",
    .summary = "Step 08 — SO_REUSEPORT: N workers, each with its own listener and loop.",
    .has_workers = true,
};
constexpr int kMaxEvents = 256;  // ready fds taken per epoll_wait; the rest wait for the next

struct Loop {
    ladder::Fd listener;
    ladder::Mode mode;
    ladder::Stats& stats;
    ladder::WorkerCounters& worker;  // this loop's own counts, in stats
    ladder::Timeouts timeouts;
    ladder::ConnTable conns;
    ladder::Fd epoll;
};

// EPOLLRDHUP: the event says when the peer has sent its FIN (on_readable
// needs to know).
std::uint32_t events_for(ladder::Want want) {
    return EPOLLET | EPOLLRDHUP | (want.read ? EPOLLIN : 0u) | (want.write ? EPOLLOUT : 0u);
}

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
    ladder::bump(loop.worker.accepted);
    ladder::bump(loop.worker.connections);
    Conn& c = loop.conns.add(std::move(*fd), loop.mode, loop.stats);
    c.session.count_requests_in(&loop.worker.requests);
    c.deadline = loop.timeouts.deadline(Clock::now(), false);
    watch(loop, EPOLL_CTL_ADD, c.fd.get(), events_for(c.want));
    return true;
}

// Edge-triggered: the listener reports one edge for a burst of clients, so
// take them all now; one left in the queue would wait for the next connect.
void on_accept(Loop& loop) {
    while (accept_one(loop)) {
    }
}

// ET reports a change, not a state: read until the socket is empty (or
// until the session stops reading), as in step 06: EAGAIN, or a short read
// unless the peer's FIN came with the bytes (`peer_closed`).
ladder::Want on_readable(Loop& loop, Conn& c, bool peer_closed) {
    for (;;) {
        IoResult r = ladder::read_some(c.fd, c.session.input());
        if (r.kind == IoResult::eof)
            c.session.on_eof();
        else if (r.kind == IoResult::error)
            c.session.abort();
        ladder::Want want = c.answer(loop.timeouts);
        if (r.kind != IoResult::ok || !want.read) return want;
        if (r.drained && !peer_closed) return want;
    }
}

ladder::Want on_writable(Loop& loop, Conn& c) { return c.answer(loop.timeouts); }

// The stop takes the clients already queued on this listener before it is
// closed: their handshake is done and their request likely sent, and a
// closing listener resets them (no other listener of the group takes them
// over). One more read of every connection then lets the drain see each
// request in flight instead of an idle client.
void take_the_queue(Loop& loop) {
    while (accept_one(loop)) {
    }
    loop.conns.for_each([&](Conn& c) {
        ladder::Want want = on_readable(loop, c, true);  // no event to say: read to EAGAIN
        if (c.session.done())
            close_conn(loop, c);
        else
            rewatch(loop, c, want);
    });
}

void run(Loop& loop) {
    ladder::Sweep sweep;
    ladder::Drain drain;
    auto close = [&](Conn& c) { close_conn(loop, c); };
    while (!drain.finished(loop.conns, close)) {
        epoll_event events[kMaxEvents];
        int ready = ::epoll_wait(loop.epoll.get(), events, kMaxEvents,
                                 sweep.wait_ms(Clock::now()));
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
        if (Clock::time_point now = Clock::now(); sweep.due(now))
            loop.conns.close_expired(now, [&](Conn& c) {
                ladder::bump(loop.stats.counters().timeouts);
                close_conn(loop, c);
            });
        if (ladder::stop_requested() && !drain.stopping()) take_the_queue(loop);
    }
}

// "127.0.0.1:8080" -> 8080: the port --port 0 got, for the other listeners.
std::uint16_t bound_port(ladder::FdRef listener) {
    std::string address = ladder::local_address(listener);
    return static_cast<std::uint16_t>(std::stoul(address.substr(address.rfind(':') + 1)));
}

// Worker i's listener and loop. Every listener sets SO_REUSEPORT before
// bind(), so all of them can bind the same address: the kernel keeps them
// in one group and hashes each new connection (addresses and ports) to one
// listener, whose own accept queue and own waiter get it.
std::unique_ptr<Loop> make_loop(const ladder::Options& options, std::uint16_t port,
                                ladder::Stats& stats, int i, ladder::Timeouts timeouts) {
    auto loop = std::make_unique<Loop>(Loop{
        .listener = ladder::listen_tcp({.host = options.host, .port = port,
                                        .reuseport = true, .nonblocking = true}),
        .mode = options.mode, .stats = stats, .worker = stats.worker(i),
        .timeouts = timeouts, .conns = {},
        .epoll = ladder::Fd(::epoll_create1(EPOLL_CLOEXEC))});
    if (!loop->epoll) ladder::throw_sys("epoll_create1");
    watch(*loop, EPOLL_CTL_ADD, loop->listener.get(), EPOLLIN | EPOLLET);
    watch(*loop, EPOLL_CTL_ADD, ladder::stop_fd(), EPOLLIN);
    return loop;
}

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
    ladder::Options options = ladder::parse_options(argc, argv, kStep, timeouts.flags());
    // One loop per CPU by default, as nginx's worker_processes auto.
    int workers = options.workers ? options.workers : ladder::usable_cpus();
    ladder::install_stop_handlers();
    ladder::raise_fd_limit();
    ladder::Stats stats("08", ladder::to_string(options.mode), workers);
    std::vector<std::unique_ptr<Loop>> loops;
    for (int i = 0; i < workers; ++i) {
        // With --port 0 the first listener gets a port; the others join it.
        std::uint16_t port = i == 0 ? options.port : bound_port(loops[0]->listener);
        loops.push_back(make_loop(options, port, stats, i, timeouts));
    }
    ladder::announce_listening(loops[0]->listener);
    run_workers(loops);
    std::printf("%s\n", stats.json().c_str());
    return 0;
} catch (const std::exception& e) {
    return ladder::report_fatal(kStep.program, e);
}

// Step 07 — the thundering herd: N workers, one listening port.
// Adds:    std::thread workers on one port; --variant: EPOLLEXCLUSIVE, a mutex, SO_REUSEPORT, fork...
// Why:     one loop uses one core; to use N, the workers must share the listener.
// Costs:   one listener in N epoll sets wakes all N per client; each cure costs fairness.
// Observe: make step-07; make test-steps PYTEST_ARGS='-k "07 and herd"'

#include "herd.h"

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
#include <sys/resource.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace herd {

using ladder::Clock;
using ladder::Conn;

constexpr ladder::StepInfo kStep{
    .summary = "Step 07 — the thundering herd: N workers share one port (--variant).",
    .has_workers = true,
};
constexpr int kMaxEvents = 256;  // ready fds taken per epoll_wait; the rest wait for the next
constexpr int kDefaultWorkers = 4;  // the herd needs several idle waiters to show

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
// A new connection joins this loop: from now on only this thread touches
// it, whichever thread accepted it.
void adopt(Loop& loop, ladder::Fd fd) {
    ladder::bump(loop.worker.connections);
    Conn& c = loop.conns.add(std::move(fd), loop.mode, loop.stats);
    c.session.count_requests_in(&loop.worker.requests);
    c.deadline = loop.timeouts.deadline(Clock::now(), false);
    watch(loop, EPOLL_CTL_ADD, c.fd.get(), events_for(c.want));
}

// Takes one client off the accept queue. False when there is none to take now.
bool accept_one(Loop& loop) {
    int fd = ::accept4(loop.listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        if (errno == EAGAIN) return false;  // the queue is empty
        if (errno == EMFILE || errno == ENFILE)
            return ladder::refuse_one_client(ladder::FdRef(loop.listener), errno,
                                             loop.stats.counters());
        if (errno == EINTR || ladder::client_gone_before_accept(errno)) return true;
        ladder::throw_sys("accept4");
    }
    ladder::bump(loop.stats.counters().accepted);
    ladder::bump(loop.worker.accepted);
    adopt(loop, ladder::Fd(fd));
    return true;
}
// [/snip]

// [snip:herd-accept]
// The listener was reported ready. With a shared listener every idle worker
// was woken for the same client: if another took it first, accept4() finds
// the queue empty (EAGAIN) and this wake-up was wasted. Level-triggered,
// the listener is reported again while clients wait, so one accept per
// wake-up leaves the rest of a crowd to the others; edge-triggered, it is
// reported once: take them all, as in step 06.
void on_accept(Loop& loop) {
    if (!accept_one(loop)) {
        ladder::bump(loop.worker.wasted_wakeups);
        return;
    }
    if (loop.listen_events & EPOLLET)
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
        if (empty || !want.read) return want;
    }
}
// [/snip]
// [/snip]

// [snip:silent-wakeups]
// Voluntary context switches of the calling thread: one per sleep.
long sleeps() {
    rusage usage{};
    if (::getrusage(RUSAGE_THREAD, &usage) != 0) ladder::throw_sys("getrusage(RUSAGE_THREAD)");
    return usage.ru_nvcsw;
}

// The kernel can wake a waiting thread, find on a second look that the
// readiness is gone (another worker took the client), and put it back to
// sleep without returning. The sleeps beyond the one that ended the call
// were such wake-ups; nothing but the context-switch count shows them.
void count_silent_wakeups(ladder::WorkerCounters& w, long sleeps_before) {
    long extra = sleeps() - sleeps_before - 1;
    if (extra > 0) ladder::bump(w.silent_wakeups, std::uint64_t(extra));
}
// [/snip]

// Puts the listener into this worker's epoll set, as the variant asks.
void watch_listener(Loop& loop, std::uint32_t events) {
    loop.listen_events = events;
    watch(loop, EPOLL_CTL_ADD, loop.listener, events);
    loop.watching = true;
}

// Read the eventfd before taking the inbox: a connection handed over after
// the swap writes the eventfd again, so none is left behind unseen.
void on_handoff(Loop& loop) {
    std::uint64_t count = 0;
    if (::read(loop.inbox.wake.get(), &count, sizeof count) < 0 && errno != EAGAIN)
        ladder::throw_sys("read(eventfd)");
    std::vector<ladder::Fd> fds;
    {
        std::lock_guard lock(loop.inbox.mutex);
        fds.swap(loop.inbox.fds);
    }
    for (ladder::Fd& fd : fds) adopt(loop, std::move(fd));
}

// No client still on its way from the acceptor (its inbox is empty, and the
// acceptor will hand over no more).
bool nothing_to_come(Loop& loop) {
    if (!loop.herd.acceptor_done) return false;
    std::lock_guard lock(loop.inbox.mutex);
    return loop.inbox.fds.empty();
}

void run(Loop& loop) {
    const Variant& variant = loop.herd.variant;
    ladder::Sweep sweep;
    ladder::Drain drain;
    auto close = [&](Conn& c) { close_conn(loop, c); };
    auto take_queue = [&] {
        if (loop.listener >= 0 && !loop.holding)
            while (accept_one(loop)) {
            }
    };
    while (!(nothing_to_come(loop) && drain.finished(loop.conns, close, take_queue))) {
        epoll_event events[kMaxEvents];
        int wait_ms = sweep.wait_ms(Clock::now());
        if (variant.before_wait) wait_ms = variant.before_wait(loop, wait_ms);
        long slept = sleeps();
        int ready = ::epoll_wait(loop.epoll.get(), events, kMaxEvents, wait_ms);
        count_silent_wakeups(loop.worker, slept);
        ladder::bump(loop.stats.counters().wakeups);
        ladder::bump(loop.worker.wakeups);
        if (ready < 0 && errno != EINTR) ladder::throw_sys("epoll_wait");
        // (EINTR: nothing to do, but the variant's after_accepts still runs.)
        // Accept first, then the variant's after_accepts (the mutex lets go),
        // then serve: a slow request must not keep the listener from the others.
        for (int i = 0; i < ready; ++i)
            if (events[i].data.fd == loop.listener) on_accept(loop);
        if (variant.after_accepts) variant.after_accepts(loop);
        for (int i = 0; i < ready; ++i) {
            int fd = events[i].data.fd;
            if (fd == loop.listener) {
                continue;
            } else if (fd == loop.inbox.wake.get()) {
                on_handoff(loop);
            } else if (fd == ladder::stop_fd()) {  // a signalfd: SIGTERM is pending
                ladder::request_stop();
                if (loop.watching)  // no new clients; a shared listener stays open
                    watch(loop, EPOLL_CTL_DEL, loop.listener, 0);
                loop.watching = false;
                watch(loop, EPOLL_CTL_DEL, fd, 0);  // it stays readable: stop watching
            } else if (Conn* c = loop.conns.find(fd)) {
                // EPOLLHUP and EPOLLERR come whether asked for or not; a read reports them.
                if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                    rewatch(loop, *c, on_readable(loop, *c));
                else
                    rewatch(loop, *c, on_writable(loop, *c));
            }
        }
        if (Clock::time_point now = Clock::now(); sweep.due(now))
            loop.conns.close_expired(now, [&](Conn& c) {
                ladder::bump(loop.stats.counters().timeouts);
                close_conn(loop, c);
            });
    }
}

ladder::Fd listen_blocking(const ladder::Options& options) {
    return ladder::listen_tcp(options.host, options.port, false);
}

// The epoll variants accept only after epoll said "ready", and another
// worker may have taken the client meanwhile: accept4 must then say EAGAIN,
// not sleep.
ladder::Fd listen_nonblocking(const ladder::Options& options) {
    return ladder::listen_tcp(options.host, options.port, true);
}

// One thread per worker, each on a Loop of its own; the variant's run_main
// (the acceptor) or a wait for them on this thread. A worker that fails
// stops the server, and main reports why.
void run_workers(Herd& herd, int workers) {
    Loops loops;
    for (int id = 0; id < workers; ++id) {
        loops.push_back(std::unique_ptr<Loop>(new Loop{
            .herd = herd, .id = id, .mode = herd.options.mode, .stats = herd.stats,
            .timeouts = herd.timeouts, .worker = herd.stats.worker(id),
            .epoll = ladder::Fd(::epoll_create1(EPOLL_CLOEXEC)),
            .listener = herd.listener.get()}));
        Loop& loop = *loops.back();
        if (!loop.epoll) ladder::throw_sys("epoll_create1");
        watch(loop, EPOLL_CTL_ADD, ladder::stop_fd(), EPOLLIN);
        herd.variant.setup(loop);
    }
    herd.acceptor_done = herd.variant.run_main == nullptr;
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
        ladder::announce_listening(herd.listener);
        if (herd.variant.run_main) herd.variant.run_main(herd, loops);
    } catch (...) {
        failures.back() = std::current_exception();  // no thread, or the acceptor failed
        ladder::request_stop();
    }
    herd.acceptor_done = true;
    for (std::thread& t : threads) t.join();
    for (std::exception_ptr& f : failures)
        if (f) std::rethrow_exception(f);
}

}  // namespace herd

const herd::Variant* find_variant(std::string_view name) {
    for (const herd::Variant* v : {&herd::kShared_lt, &herd::kShared_et, &herd::kExclusive,
                                   &herd::kMutex, &herd::kAcceptor, &herd::kReuseport})
        if (v->name == name) return v;
    return nullptr;  // blocking
}

int main(int argc, char** argv) try {
    ladder::Timeouts timeouts;
    std::vector<ladder::Flag> flags = timeouts.flags();
    std::string variant = "shared-lt";
    flags.push_back({.name = "variant", .help = "who waits on the port (see herd.h)",
                     .target = &variant,
                     .choices = "blocking|shared-lt|shared-et|exclusive|mutex|acceptor|reuseport"});
    ladder::Options options = ladder::parse_options(argc, argv, herd::kStep, flags);
    int workers = options.workers ? options.workers : herd::kDefaultWorkers;
    ladder::install_stop_handlers();
    ladder::raise_fd_limit();
    ladder::Stats stats(herd::kStep.number, ladder::to_string(options.mode), workers);
    stats.set_extra([&](std::string& out) { ladder::json_field(out, "variant", variant); });
    const herd::Variant* chosen = find_variant(variant);
    herd::Herd herd{.variant = chosen ? *chosen : herd::kShared_lt, .options = options,
                    .stats = stats, .timeouts = timeouts,
                    .listener = chosen ? chosen->open_listener(options)
                                       : herd::listen_blocking(options),
                    .accept_mutex = {}};
    if (chosen)
        herd::run_workers(herd, workers);
    else
        herd::run_blocking(herd, workers);
    std::printf("%s\n", stats.json().c_str());
    return 0;
} catch (const std::exception& e) {
    return ladder::report_fatal(herd::kStep.program, e);
}

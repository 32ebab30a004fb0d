// Step 07 — the thundering herd: N workers, one listening port.
// Adds:    --workers N, each running step 06's loop; --variant: who waits on the port.
// Why:     one loop uses one core; to use N, the workers must share the listener.
// Costs:   one listener in N epoll sets wakes all N per client; each cure costs fairness.
// Observe: make step-07; make test-steps PYTEST_ARGS='-k "07 and herd"'

#include "herd.h"

#include "error.h"
#include "signals.h"

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <exception>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <thread>
#include <vector>

namespace herd {

using ladder::Clock;
using ladder::Conn;
using ladder::IoResult;

constexpr ladder::StepInfo kStep{
    .program = "step-07",
    .summary = "Step 07 — the thundering herd: N workers share one port (--variant).",
    .has_workers = true,
};
constexpr int kMaxEvents = 256;  // ready fds taken per epoll_wait; the rest wait for the next
constexpr int kDefaultWorkers = 4;      // the herd needs several idle waiters to show
constexpr int kAcceptMutexDelay = 100;  // ms until a worker without the mutex retries

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

// A new connection joins this loop: from now on only this thread touches
// it, whichever thread accepted it.
void adopt(Loop& loop, ladder::Fd fd) {
    ladder::bump(loop.worker.connections);
    Conn& c = loop.conns.add(std::move(fd), loop.mode, loop.stats);
    c.session.count_requests_in(&loop.worker.requests);
    c.deadline = loop.timeouts.deadline(Clock::now(), false);
    watch(loop, EPOLL_CTL_ADD, c.fd.get(), events_for(c.want));
}

// Takes one client off the accept queue. False when the queue was empty.
bool accept_one(Loop& loop) {
    bool refused = false;
    std::optional<ladder::Fd> fd =
        ladder::try_accept(ladder::FdRef(loop.listener), true, &refused);
    if (refused) ladder::bump(loop.stats.counters().refused);
    if (!fd) return refused;
    ladder::bump(loop.stats.counters().accepted);
    ladder::bump(loop.worker.accepted);
    adopt(loop, std::move(*fd));
    return true;
}

// The listener was reported ready. With a shared listener every idle worker
// was woken for the same client: if another one took it first, accept()
// finds the queue empty (EAGAIN) and this wake-up was wasted. LT reports
// the listener again while clients wait, so one accept per wake-up leaves
// the rest of a crowd to the others; ET reports it once: take them all.
void on_accept(Loop& loop) {
    if (!accept_one(loop)) {
        ladder::bump(loop.worker.wasted_wakeups);
        return;
    }
    if (loop.listen_events & EPOLLET)
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

// The stop takes the clients already queued on the listener before it is
// closed: their handshake is done and their request likely sent, and a
// closing listener resets them. One more read of every connection then lets
// the drain see each request in flight instead of an idle client.
void take_the_queue(Loop& loop) {
    if (loop.listener >= 0)
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

// Voluntary context switches of the calling thread: one per sleep.
long sleeps() {
    rusage usage{};
    if (::getrusage(RUSAGE_THREAD, &usage) != 0)
        ladder::throw_sys("getrusage(RUSAGE_THREAD)");
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

int wait_ms(const Loop& loop, const ladder::Sweep& sweep, bool holds_mutex) {
    int ms = sweep.wait_ms(Clock::now());
    if (loop.herd.variant == Variant::mutex && !holds_mutex)
        ms = std::min(ms, kAcceptMutexDelay);
    return ms;
}

void run(Loop& loop) {
    ladder::Sweep sweep;
    ladder::Drain drain;
    auto close = [&](Conn& c) { close_conn(loop, c); };
    while (!drain.finished(loop.conns, close)) {
        std::unique_lock<std::mutex> held = take_accept_mutex(loop, drain.stopping());
        epoll_event events[kMaxEvents];
        long slept = sleeps();
        int ready = ::epoll_wait(loop.epoll.get(), events, kMaxEvents,
                                 wait_ms(loop, sweep, held.owns_lock()));
        count_silent_wakeups(loop.worker, slept);
        ladder::bump(loop.stats.counters().wakeups);
        ladder::bump(loop.worker.wakeups);
        if (ready < 0 && errno != EINTR) ladder::throw_sys("epoll_wait");
        // Accept first, then let go of the accept mutex, then serve (as nginx
        // does): a slow request must not keep the listener from the others.
        for (int i = 0; i < ready; ++i)
            if (events[i].data.fd == loop.listener) on_accept(loop);
        if (held) held.unlock();
        for (int i = 0; i < ready; ++i) {
            int fd = events[i].data.fd;
            if (fd == loop.listener) {
                continue;
            } else if (fd == loop.inbox.wake.get()) {
                on_handoff(loop);
            } else if (fd == ladder::stop_fd()) {
                if (loop.watching)  // no new clients; a shared listener stays open
                    watch(loop, EPOLL_CTL_DEL, loop.listener, 0);
                loop.watching = false;
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

// SIG_BLOCK or SIG_UNBLOCK: SIGINT and SIGTERM, in the calling thread.
void mask_stop_signals(int how) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (int err = ::pthread_sigmask(how, &set, nullptr); err != 0)
        ladder::throw_sys("pthread_sigmask", err);
}

// One thread per loop; with --variant acceptor this thread accepts for
// them. A loop that fails stops the server, and main reports why.
void run_threads(Herd& herd, int workers) {
    Loops loops;
    for (int id = 0; id < workers; ++id) {
        loops.push_back(std::make_unique<Loop>(herd, id));
        setup(*loops.back());
    }
    std::vector<std::exception_ptr> failures(loops.size() + 1);
    std::vector<std::thread> threads;
    try {
        // A thread starts with its creator's signal mask: the workers never
        // take SIGINT/SIGTERM, so the handler always runs on this thread,
        // asleep in join() or accept(), not in the middle of a worker's loop.
        mask_stop_signals(SIG_BLOCK);
        for (std::size_t i = 0; i < loops.size(); ++i)
            threads.emplace_back([&loops, &failures, i] {
                try {
                    run(*loops[i]);
                } catch (...) {
                    failures[i] = std::current_exception();
                    ladder::request_stop();
                }
            });
        mask_stop_signals(SIG_UNBLOCK);
        ladder::announce_listening(herd.listener);
        if (herd.variant == Variant::acceptor) run_acceptor(herd, loops);
    } catch (...) {
        failures.back() = std::current_exception();  // no thread, or the acceptor failed
        ladder::request_stop();
    }
    for (std::thread& t : threads) t.join();
    for (std::exception_ptr& f : failures)
        if (f) std::rethrow_exception(f);
}

}  // namespace herd

int main(int argc, char** argv) try {
    ladder::Timeouts timeouts;
    std::string variant = "shared-lt";
    std::vector<ladder::Flag> flags = timeouts.flags();
    flags.push_back({.name = "variant", .help = "who waits on the port (see herd.h)",
                     .target = &variant, .choices = herd::kVariants});
    ladder::Options options = ladder::parse_options(argc, argv, herd::kStep, flags);
    int workers = options.workers ? options.workers : herd::kDefaultWorkers;
    ladder::install_stop_handlers();
    ladder::raise_fd_limit();
    ladder::Stats stats("07", ladder::to_string(options.mode), workers);
    stats.set_extra([&](std::string& out) { herd::add_herd_json(stats, variant, out); });
    ladder::ListenOptions listen{.host = options.host, .port = options.port};
    herd::Variant chosen = herd::parse_variant(variant);
    herd::Herd herd{.variant = chosen, .mode = options.mode, .stats = stats,
                    .timeouts = timeouts, .listen = listen,
                    .listener = herd::open_listener(chosen, listen, options.port),
                    .accept_mutex = {}};
    if (chosen == herd::Variant::blocking)
        herd::run_blocking(herd, workers);
    else
        herd::run_threads(herd, workers);
    std::printf("%s\n", stats.json().c_str());
    return 0;
} catch (const std::exception& e) {
    return ladder::report_fatal(herd::kStep.program, e);
}

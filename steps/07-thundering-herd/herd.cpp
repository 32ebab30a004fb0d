// herd.cpp — step 07's variants: how a new connection reaches one worker.
//
// One section per way of waiting (herd.h has the table): the listener each
// worker's epoll set watches, the accept mutex, the acceptor thread, and the
// pre-forked processes asleep in accept().

#include "herd.h"

#include "error.h"
#include "session.h"
#include "signals.h"

#include <cassert>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace herd {

using ladder::Clock;

Variant parse_variant(std::string_view name) {
    constexpr std::pair<std::string_view, Variant> kNames[] = {
        {"blocking", Variant::blocking},   {"shared-lt", Variant::shared_lt},
        {"shared-et", Variant::shared_et}, {"exclusive", Variant::exclusive},
        {"mutex", Variant::mutex},         {"acceptor", Variant::acceptor},
        {"reuseport", Variant::reuseport}};
    for (auto [text, variant] : kNames)
        if (text == name) return variant;
    throw std::invalid_argument("unknown --variant '" + std::string(name) + "'");
}

Loop::Loop(Herd& h, int worker_id)
    : mode(h.mode), stats(h.stats), timeouts(h.timeouts), conns(),
      epoll(::epoll_create1(EPOLL_CLOEXEC)), herd(h), id(worker_id),
      worker(h.stats.worker(worker_id)) {
    if (!epoll) ladder::throw_sys("epoll_create1");
}

// --------------------------------------------------------------------------
// The listeners

// blocking and acceptor sleep in accept(): a blocking listener. The others
// accept only after epoll said "ready", and another worker may have taken
// the connection meanwhile: accept must then say EAGAIN, not sleep.
ladder::Fd open_listener(Variant variant, ladder::ListenOptions o, std::uint16_t port) {
    o.port = port;
    o.nonblocking = variant != Variant::blocking && variant != Variant::acceptor;
    o.reuseport = variant == Variant::reuseport;
    return ladder::listen_tcp(o);
}

// "127.0.0.1:8080" -> 8080: the port --port 0 got, for the other listeners.
std::uint16_t bound_port(ladder::FdRef listener) {
    std::string address = ladder::local_address(listener);
    return static_cast<std::uint16_t>(std::stoul(address.substr(address.rfind(':') + 1)));
}

// How each variant puts a listener into a worker's epoll set.
void setup(Loop& loop) {
    Herd& h = loop.herd;
    watch(loop, EPOLL_CTL_ADD, ladder::stop_fd(), EPOLLIN);
    loop.listener = h.listener.get();
    switch (h.variant) {
    case Variant::shared_lt:
        // One socket in N epoll sets: its wait queue holds one entry per set,
        // and a new connection runs every entry. Each idle worker wakes up;
        // the first to call accept() gets the client, the rest get EAGAIN.
        loop.listen_events = EPOLLIN;
        break;
    case Variant::shared_et:
        // ET changes how often a set reports the listener, not who wakes.
        loop.listen_events = EPOLLIN | EPOLLET;
        break;
    case Variant::exclusive:
        // EPOLLEXCLUSIVE (Linux 4.5): this set's entry waits exclusively; a
        // connection wakes the first entry whose worker is idle in
        // epoll_wait, then stops. The entries keep the order the sets were
        // added in, so at a low rate the same worker wins every time.
        loop.listen_events = EPOLLIN | EPOLLEXCLUSIVE;
        break;
    case Variant::mutex:
        loop.listen_events = EPOLLIN;
        return;  // watched only while the accept mutex is held
    case Variant::reuseport:
        // Each worker binds its own listener to the same port: the kernel
        // hashes a new connection's addresses and ports to one listener, so
        // one queue and one waiter per connection.
        if (loop.id > 0) {
            loop.own_listener = open_listener(h.variant, h.listen, bound_port(h.listener));
            loop.listener = loop.own_listener.get();
        }
        loop.listen_events = EPOLLIN | EPOLLET;
        break;
    case Variant::acceptor:
        loop.listener = -1;
        loop.inbox.wake.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        if (!loop.inbox.wake) ladder::throw_sys("eventfd");
        watch(loop, EPOLL_CTL_ADD, loop.inbox.wake.get(), EPOLLIN);
        return;
    case Variant::blocking:
        assert(false && "blocking runs processes, not epoll workers");
        return;
    }
    watch(loop, EPOLL_CTL_ADD, loop.listener, loop.listen_events);
    loop.watching = true;
}

// --------------------------------------------------------------------------
// mutex: nginx's accept_mutex

// Only the worker holding the mutex has the listener in its epoll set, so a
// connection wakes one worker. try_lock, never lock: a worker that misses it
// serves its own clients and tries again within kAcceptMutexDelay. The
// holder tends to win again (it retries first): the load is not spread.
std::unique_lock<std::mutex> take_accept_mutex(Loop& loop, bool stopping) {
    std::unique_lock lock(loop.herd.accept_mutex, std::defer_lock);
    if (loop.herd.variant != Variant::mutex || stopping) return lock;
    bool held = lock.try_lock();
    if (held != loop.watching) {
        int op = held ? EPOLL_CTL_ADD : EPOLL_CTL_DEL;
        watch(loop, op, loop.listener, loop.listen_events);
        loop.watching = held;
    }
    return lock;
}

// --------------------------------------------------------------------------
// acceptor: one thread accepts, the workers only serve

void hand_over(Loop& loop, ladder::Fd fd) {
    {
        std::lock_guard lock(loop.inbox.mutex);
        loop.inbox.fds.push_back(std::move(fd));
    }
    std::uint64_t one = 1;
    if (::write(loop.inbox.wake.get(), &one, sizeof one) != sizeof one)
        ladder::throw_sys("write(eventfd)");
}

// The acceptor sleeps in accept() alone, so nobody else is woken; it deals
// the connections round-robin. The price: a hop between threads per client,
// and one thread that every new connection waits for.
void run_acceptor(Herd& herd, Loops& loops) {
    ladder::wake_on_stop(herd.listener.get());  // a stop wakes the sleeping accept()
    std::size_t next = 0;
    while (!ladder::stop_requested()) {
        std::optional<ladder::Fd> fd = ladder::try_accept(herd.listener, true);
        ladder::bump(herd.stats.counters().wakeups);
        if (!fd) continue;
        ladder::bump(herd.stats.counters().accepted);
        hand_over(*loops[next], std::move(*fd));
        next = (next + 1) % loops.size();
    }
}

// Read the eventfd before taking the inbox: a connection handed over after
// the swap writes the eventfd again, so it is never left behind unseen.
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

// --------------------------------------------------------------------------
// blocking: pre-forked processes asleep in accept() (Apache's prefork)

// Step 01's serve(): reads, answers, writes — until the client leaves.
void serve(ladder::FdRef conn, Herd& herd, ladder::WorkerCounters& w) {
    ladder::Session session(herd.mode, herd.stats);
    session.count_requests_in(&w.requests);
    // A stop request shuts down our read side, so a read() asleep here
    // returns 0 and the loop ends after flushing what was answered.
    int slot = ladder::wake_on_stop(conn.get());
    while (!session.done()) {
        ladder::IoResult r = ladder::read_some(conn, session.input());
        if (r.kind == ladder::IoResult::ok)
            session.process();
        else if (r.kind == ladder::IoResult::eof)
            session.on_eof();
        else
            session.abort();
        // The session stops answering while its output is above the
        // high-water mark: once that is written, answer what is still in the
        // input (pipelined requests) before sleeping in read() again.
        while (!session.output().empty()) {
            if (ladder::write_all(conn, session.output()).kind != ladder::IoResult::ok) {
                session.abort();
                break;
            }
            session.process();
        }
    }
    ladder::forget_on_stop(slot);
    ladder::bump(herd.stats.counters().closed);
}

// Every worker process sleeps in accept() on the same socket. accept()
// waits as an exclusive waiter (since Linux 2.6), so a connection wakes one
// of them; a worker that comes back queues behind the others: they take
// turns. Each serves its client to the end, so N processes serve N clients
// at a time.
void blocking_worker(Herd& herd, int id) {
    ladder::WorkerCounters& w = herd.stats.worker(id);
    while (!ladder::stop_requested()) {
        std::optional<ladder::Fd> conn;
        long before = sleeps();
        try {
            conn = ladder::try_accept(herd.listener);
        } catch (const std::system_error& e) {
            // EINVAL: the parent shut the listener down to stop the server,
            // before our own SIGTERM arrived.
            if (e.code() != std::errc::invalid_argument) throw;
            return;
        }
        count_silent_wakeups(w, before);
        ladder::bump(herd.stats.counters().wakeups);
        ladder::bump(w.wakeups);
        if (!conn) continue;
        ladder::bump(herd.stats.counters().accepted);
        ladder::bump(w.accepted);
        ladder::bump(w.connections);
        serve(*conn, herd, w);
    }
}

// SIGTERM wakes a child asleep in read() on a client (its handler shuts the
// socket down); a child still busy after the drain time is killed.
void stop_children(std::vector<pid_t>& children) {
    for (pid_t pid : children)
        if (::kill(pid, SIGTERM) != 0) ladder::throw_sys("kill(SIGTERM)");
    auto deadline = Clock::now() + ladder::Drain::kTime;
    while (!children.empty() && Clock::now() < deadline) {
        pid_t pid = ::waitpid(-1, nullptr, WNOHANG);
        if (pid > 0)
            std::erase(children, pid);
        else if (pid == 0)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        else if (errno != EINTR)
            ladder::throw_sys("waitpid");
    }
    for (pid_t pid : children) {
        // Unreaped, so the pid is still this child's: it cannot be reused yet.
        if (::kill(pid, SIGKILL) != 0) ladder::throw_sys("kill(SIGKILL)");
        if (ladder::retry_eintr([&] { return ::waitpid(pid, nullptr, 0); }) < 0)
            ladder::throw_sys("waitpid");
    }
}

// The parent forks the workers, then only waits. The counters live in a
// MAP_SHARED mapping, so its stats line adds up what the children counted.
void run_blocking(Herd& herd, int workers) {
    herd.stats.share_across_fork();
    // A stop shuts the listener down: every child asleep in accept() returns.
    ladder::wake_on_stop(herd.listener.get());
    std::vector<pid_t> children;
    for (int id = 0; id < workers; ++id) {
        pid_t pid = ::fork();
        if (pid < 0) {
            int err = errno;
            stop_children(children);
            ladder::throw_sys("fork", err);
        }
        if (pid == 0) {
            int status = 0;
            try {
                blocking_worker(herd, id);
            } catch (const std::exception& e) {
                status = ladder::report_fatal("step-07 worker", e);
            }
            std::fflush(stderr);
            ::_exit(status);  // not exit(): the parent's atexit handlers are not ours
        }
        children.push_back(pid);
    }
    ladder::announce_listening(herd.listener);
    // The children share the stop eventfd (fork copies descriptors): a stop
    // signal to the parent or to any worker makes it readable. The timeout
    // only re-checks the flag, for a runtime (TSan) that defers a handler to
    // the next call it intercepts.
    pollfd stop{.fd = ladder::stop_fd(), .events = POLLIN, .revents = 0};
    for (;;) {
        int ready = ::poll(&stop, 1, 1000);
        if (ready > 0 || ladder::stop_requested()) break;
        if (ready < 0 && errno != EINTR) ladder::throw_sys("poll(stop eventfd)");
    }
    stop_children(children);
}

// --------------------------------------------------------------------------
// The herd's numbers, from the per-worker counters

std::string number(double x) {
    char text[32];
    std::snprintf(text, sizeof text, "%.4f", x);
    return text;
}

// Each worker's share of the connections; Jain's fairness index
// J = (Σx)² / (n·Σx²): 1 when every worker served as many, 1/n when one
// served them all; and the wake-ups that found nothing, per connection —
// whether accept() said EAGAIN or the kernel put the worker back to sleep.
void add_herd_json(ladder::Stats& stats, std::string_view variant, std::string& out) {
    int n = stats.worker_count();
    double sum = 0, squares = 0, wasted = 0;
    for (int i = 0; i < n; ++i) {
        const ladder::WorkerCounters& w = stats.worker(i);
        auto x = double(w.connections.load(std::memory_order_relaxed));
        sum += x;
        squares += x * x;
        wasted += double(w.wasted_wakeups.load(std::memory_order_relaxed) +
                         w.silent_wakeups.load(std::memory_order_relaxed));
    }
    out += ",\"variant\":\"";
    out += variant;
    out += "\",\"wasted_per_connection\":" + (sum > 0 ? number(wasted / sum) : "null");
    out += ",\"fairness\":" + (sum > 0 ? number(sum * sum / (n * squares)) : "null");
    out += ",\"shares\":[";
    for (int i = 0; i < n; ++i) {
        auto x = double(stats.worker(i).connections.load(std::memory_order_relaxed));
        out += (i ? "," : "") + number(sum > 0 ? x / sum : 0);
    }
    out += "]";
}

}  // namespace herd

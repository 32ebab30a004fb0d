// Step 09 — the 1+N+M pool: one acceptor, N I/O loops, M workers.
// Adds:    eventfd hand-offs (an inbox per loop), timerfd timeouts, a bounded job queue.
// Why:     a slow /work holds a worker, not a loop: /hello on that loop answers at once.
// Costs:   a lock and a wake-up per hand-off; a full queue must answer 503.
// Observe: make step-09; make test-steps PYTEST_ARGS='-k "09 and pool"'
//
//   acceptor (main) ──accept4──▶ inbox of loop next++ % N ──eventfd──▶ that loop
//   loop ──/work, /cpu──▶ the pool's bounded queue ──▶ worker ──result──▶ that loop's inbox
//
// Thread rule: a loop's connections are touched by its own thread only
// (asserted); other threads reach it through its inbox (a mutex, an eventfd).
// So no connection needs a lock, and no two threads write to one socket.

#include "conn.h"
#include "error.h"
#include "net.h"
#include "options.h"
#include "session.h"
#include "signals.h"
#include "stats.h"

#include <algorithm>
#include <atomic>
#include <cassert>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

using ladder::Clock;
using ladder::Conn;

constexpr ladder::StepInfo kStep{
    .summary = "Step 09 — 1 acceptor + N epoll loops + M workers behind a bounded queue.",
    .has_workers = true,
};
constexpr int kMaxEvents = 256;  // ready fds taken per epoll_wait; the rest wait for the next

// -- the M: worker threads behind one bounded queue
//
//   loop ──try_submit──▶ [ job | job | job ] ──▶ worker: run_slow_job(), post_result()
//
// A job names its connection by loop, fd and serial (the kernel gives a
// closed fd's number to the next client; a serial is never reused), never by
// its Conn: a worker only posts the result to the loop that owns it.
struct Loop;
struct Job {
    ladder::SlowJob what;
    Loop* loop;
    int fd;
    std::uint64_t serial;
};
struct Result {
    Job job;
    std::optional<std::string> body;  // none: the job was not run (a stop)
};
void post_result(Loop& loop, Result result);

struct Pool {
    std::size_t capacity;  // jobs that may wait beyond the M running
    std::vector<std::jthread> workers = {};
    std::mutex mutex = {};
    std::condition_variable ready = {};
    std::deque<Job> queue = {};  // guarded by mutex, as are the three below
    std::size_t running = 0;
    std::uint64_t rejected = 0;
    bool stopping = false;
};

// [exercise:queue]
// Any thread. Never blocks (a loop waiting here would stall all its
// connections): full, it says no at once, and the session answers 503. The
// bound counts running jobs too: a burst before idle workers wake still fits.
bool try_submit(Pool& pool, Job job) {
    {
        std::lock_guard lock(pool.mutex);
        if (pool.stopping ||
            pool.queue.size() + pool.running >= pool.workers.size() + pool.capacity) {
            ++pool.rejected;
            return false;
        }
        pool.queue.push_back(job);
    }
    pool.ready.notify_one();  // one job, one sleeper: notify_all would be step 07's herd
    return true;
}
// [/exercise]

void work(Pool& pool, ladder::WorkerCounters& mine) {
    std::unique_lock lock(pool.mutex);
    for (;;) {
        while (pool.queue.empty() && !pool.stopping) {
            pool.ready.wait(lock);
            ladder::bump(mine.wakeups);
            if (pool.queue.empty() && !pool.stopping)  // another worker was faster
                ladder::bump(mine.wasted_wakeups);
        }
        if (pool.stopping) return;
        Job job = pool.queue.front();
        pool.queue.pop_front();
        ++pool.running;
        lock.unlock();  // a 10 s /work holds its worker, not the queue
        std::optional<std::string> body;
        if (!ladder::drain_over()) {  // past a stop's drain time a job is not started
            body = ladder::run_slow_job(job.what);
            ladder::bump(mine.requests);
        }
        post_result(*job.loop, {job, std::move(body)});
        lock.lock();
        --pool.running;
    }
}

// -- the N: one epoll loop per I/O thread


// Until the acceptor returns it may hand a loop clients it took before the
// stop: no loop may end its drain before that.
std::atomic<bool> acceptor_done{false};

struct Loop {
    // Set before the loop's thread starts, then only read: any thread.
    int id;
    ladder::Mode mode;
    ladder::Stats& stats;
    ladder::Timeouts timeouts;
    Pool& pool;
    ladder::Fd epoll{::epoll_create1(EPOLL_CLOEXEC)};
    ladder::Fd timer{::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK)};
    // The inbox, what other threads hand the loop: any thread, under the
    // mutex, then a write to the eventfd — a counter epoll can watch, readable
    // while non-zero, so a hand-off wakes the loop in epoll_wait.
    std::mutex mutex = {};
    std::vector<ladder::Fd> clients = {};  // from the acceptor
    std::vector<Result> results = {};      // from the workers
    ladder::Fd wake{::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
    ladder::WorkerCounters counters = {};  // read by whichever loop serves /stats
    // The loop's own thread only.
    std::thread::id thread = {};
    ladder::ConnTable conns = {};
};

bool in_loop_thread(const Loop& loop) { return std::this_thread::get_id() == loop.thread; }

// [snip:hand-off]
// Any thread: append to the inbox, then add 1 to the eventfd (EAGAIN: the
// counter is at its maximum, the loop is due to wake anyway).
void ring(Loop& loop) {
    std::uint64_t one = 1;
    if (::write(loop.wake.get(), &one, sizeof one) < 0 && errno != EAGAIN)
        ladder::throw_sys("write(eventfd)");
}
void post_client(Loop& loop, ladder::Fd fd) {
    std::lock_guard lock(loop.mutex);
    loop.clients.push_back(std::move(fd));
    ring(loop);
}
void post_result(Loop& loop, Result result) {
    std::lock_guard lock(loop.mutex);
    loop.results.push_back(std::move(result));
    ring(loop);
}
// [/snip]

// -- from here on, the loop's own thread (asserted where its handlers begin)

std::uint32_t events_for(ladder::Want want) {  // as in step 08
    return EPOLLET | EPOLLRDHUP | (want.read ? EPOLLIN : 0u) | (want.write ? EPOLLOUT : 0u);
}

void watch(Loop& loop, int op, int fd, std::uint32_t events) {
    epoll_event ev{.events = events, .data = {.fd = fd}};
    if (::epoll_ctl(loop.epoll.get(), op, fd, &ev) != 0)
        ladder::throw_sys("epoll_ctl(fd " + std::to_string(fd) + ")");
}

void close_conn(Loop& loop, Conn& c) {
    ladder::bump(loop.stats.counters().closed);
    loop.conns.remove(c);  // closing the socket also takes it off the epoll list
}

void rewatch(Loop& loop, Conn& c, ladder::Want want) {
    if (c.session.done()) {
        close_conn(loop, c);
    } else {
        if (want.read != c.want.read || want.write != c.want.write)
            watch(loop, EPOLL_CTL_MOD, c.fd.get(), events_for(want));
        c.want = want;
    }
}

// A client from the acceptor joins this loop (bytes that came before the
// EPOLL_CTL_ADD are not lost: adding a ready socket queues its event). The
// session's offload hook sends /work and /cpu to the pool (false: full: 503).
void on_accept(Loop& loop, ladder::Fd client) {
    assert(in_loop_thread(loop));
    ladder::bump(loop.counters.accepted);
    ladder::bump(loop.counters.connections);
    Conn& c = loop.conns.add(std::move(client), loop.mode, loop.stats);
    c.session.count_requests_in(&loop.counters.requests);
    Job job{.what = {}, .loop = &loop, .fd = c.fd.get(), .serial = c.serial};
    c.session.set_offload([job](const ladder::SlowJob& what) mutable {
        job.what = what;
        return try_submit(job.loop->pool, job);
    });
    c.deadline = loop.timeouts.deadline(Clock::now(), false);
    watch(loop, EPOLL_CTL_ADD, c.fd.get(), events_for(c.want));
}

// Answers and sends, as in step 03.
ladder::Want on_writable(Loop& loop, Conn& c) {
    assert(in_loop_thread(loop));
    do {
        c.session.process();
        std::string_view out = c.session.output().readable();
        if (out.empty()) break;
        ssize_t n = ::send(c.fd.get(), out.data(), out.size(), MSG_NOSIGNAL);
        if (n >= 0)
            c.session.output().consume(std::size_t(n));
        else if (errno != EAGAIN && errno != EINTR)
            c.session.abort();
    } while (c.session.output().empty() && c.session.held_back());
    c.rearm(Clock::now(), loop.timeouts);
    // Waiting for a worker is not idling: the server is the slow one.
    if (c.session.waiting_for_job()) c.deadline = Clock::time_point::max();
    return c.session.want();
}

// As in step 08: ET, with the short-read cut and EPOLLRDHUP for the FIN.
ladder::Want on_readable(Loop& loop, Conn& c, bool peer_closed) {
    assert(in_loop_thread(loop));
    for (;;) {
        char* room = c.session.input().writable(ladder::kReadSize).data();
        ssize_t n = ::read(c.fd.get(), room, ladder::kReadSize);
        if (n > 0)
            c.session.input().commit(std::size_t(n));
        else if (n == 0)
            c.session.on_eof();
        else if (errno != EAGAIN && errno != EINTR)
            c.session.abort();
        bool empty = (n < 0 && errno == EAGAIN) ||
                     (n > 0 && std::size_t(n) < ladder::kReadSize && !peer_closed);
        ladder::Want want = on_writable(loop, c);
        if (empty || !want.read) return want;
    }
}

// [exercise:inbox]
// [snip:inbox]
// Read the eventfd first, then take the inbox: a hand-off made in between
// is in this batch and its ring costs only a spare wake-up; taking first
// could swallow the ring of a hand-off made just after.
void on_inbox(Loop& loop) {
    assert(in_loop_thread(loop));
    std::uint64_t count = 0;
    if (::read(loop.wake.get(), &count, sizeof count) < 0 && errno != EAGAIN)
        ladder::throw_sys("read(eventfd)");
    std::vector<ladder::Fd> clients;
    std::vector<Result> results;
    {
        std::lock_guard lock(loop.mutex);
        clients.swap(loop.clients);
        results.swap(loop.results);
    }
    for (ladder::Fd& fd : clients) on_accept(loop, std::move(fd));
    for (Result& r : results) {
        Conn* c = loop.conns.find(r.job.fd);
        if (c == nullptr || c->serial != r.job.serial) continue;  // it left while the job ran
        if (r.body)
            c->session.complete(*r.body);  // answers it, and what was pipelined behind it
        else
            c->session.complete_refused();
        rewatch(loop, *c, on_writable(loop, *c));
    }
}
// [/snip]
// [/exercise]

// The acceptor has returned, and its last clients are out of the inbox.
bool nothing_to_come(Loop& loop) {
    if (!acceptor_done) return false;
    std::lock_guard lock(loop.mutex);
    return loop.clients.empty();
}

// The loop's thread. A loop that fails stops the server, and main exits 1.
void run(Loop& loop, std::atomic<bool>& failed) try {
    loop.thread = std::this_thread::get_id();
    ladder::Drain drain;
    auto close = [&](Conn& c) { close_conn(loop, c); };
    auto nothing = [] {};  // the acceptor takes the listener's queue
    while (!(nothing_to_come(loop) && drain.finished(loop.conns, close, nothing))) {
        epoll_event events[kMaxEvents];
        // The timerfd wakes us for the timeouts; during a stop, look every 100 ms.
        int wait_ms = ladder::stop_requested() ? 100 : -1;
        int ready = ::epoll_wait(loop.epoll.get(), events, kMaxEvents, wait_ms);
        ladder::bump(loop.stats.counters().wakeups);
        ladder::bump(loop.counters.wakeups);
        if (ready < 0) {
            if (errno == EINTR) continue;
            ladder::throw_sys("epoll_wait");
        }
        for (int i = 0; i < ready; ++i) {
            int fd = events[i].data.fd;
            if (fd == loop.timer.get()) {  // readable once a second: epoll watches it like a socket
                std::uint64_t expirations = 0;
                if (::read(fd, &expirations, sizeof expirations) < 0 && errno != EAGAIN)
                    ladder::throw_sys("read(timerfd)");
                loop.conns.close_expired(Clock::now(), [&](Conn& c) {
                    ladder::bump(loop.stats.counters().timeouts);
                    close_conn(loop, c);
                });
            } else if (fd == loop.wake.get()) {
                on_inbox(loop);
            } else if (Conn* c = loop.conns.find(fd)) {
                std::uint32_t closed = events[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR);
                if ((events[i].events & EPOLLIN) || closed)
                    rewatch(loop, *c, on_readable(loop, *c, closed != 0));
                else
                    rewatch(loop, *c, on_writable(loop, *c));
            }
        }
    }
    loop.conns.for_each([&](Conn& c) { close_conn(loop, c); });  // what the drain gave up on
} catch (const std::exception& e) {
    std::fprintf(stderr, "step-09: I/O loop %d: %s\n", loop.id, e.what());
    failed = true;
    ladder::request_stop();
}

using Loops = std::vector<std::unique_ptr<Loop>>;

// [snip:acceptor]
// The 1: this thread only accepts. It sleeps in poll() on the listener and
// stop_fd, takes every client queued (accept4 until EAGAIN), and hands each
// to the next loop in turn (round-robin, as muduo's EventLoopThreadPool). A
// stop ends it after one more look: the queue is taken, not reset at close.
void run_acceptor(ladder::FdRef listener, Loops& loops, ladder::Stats& stats) {
    pollfd fds[2] = {{listener.get(), POLLIN, 0}, {ladder::stop_fd(), POLLIN, 0}};
    for (std::size_t next = 0;;) {
        bool stopping = ladder::stop_requested();
        if (!stopping && ::poll(fds, 2, -1) < 0 && errno != EINTR) ladder::throw_sys("poll");
        ladder::bump(stats.counters().wakeups);
        if (fds[1].revents & POLLIN) ladder::request_stop();  // a signalfd: SIGTERM is pending
        for (;;) {
            int fd = ::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd >= 0) {
                ladder::bump(stats.counters().accepted);
                post_client(*loops[next], ladder::Fd(fd));
                next = (next + 1) % loops.size();
            } else if (errno == EAGAIN) {
                break;
            } else if (errno == EMFILE || errno == ENFILE) {
                if (!ladder::refuse_one_client(listener, errno, stats.counters())) break;
            } else if (errno != EINTR && !ladder::client_gone_before_accept(errno)) {
                ladder::throw_sys("accept4");
            }
        }
        if (stopping) return;
    }
}
// [/snip]

// ,"io_threads":N,"queue":{...},"loops":[{...},...] after the common stats.
void append_json(std::string& out, const Loops& loops, Pool& pool) {
    ladder::json_field(out, "io_threads", std::uint64_t(loops.size()));
    {
        std::lock_guard lock(pool.mutex);
        out += ",\"queue\":{\"capacity\":" + std::to_string(pool.capacity);
        ladder::json_field(out, "waiting", std::uint64_t(pool.queue.size()));
        ladder::json_field(out, "running", std::uint64_t(pool.running));
        ladder::json_field(out, "rejected_503", pool.rejected);
        out += "}";
    }
    std::vector<const ladder::WorkerCounters*> each;
    for (const auto& loop : loops) each.push_back(&loop->counters);
    ladder::json_workers(out, "loops", each);
}

}  // namespace

int main(int argc, char** argv) try {
    ladder::Timeouts timeouts;
    std::vector<ladder::Flag> flags = timeouts.flags();
    int io_threads = 0, queue = 0;
    flags.push_back({.name = "io-threads", .help = "I/O loops (default: one per CPU)",
                     .target = &io_threads, .min = 1, .max = 256});
    flags.push_back({.name = "queue", .help = "jobs that may wait for a worker (default 8 each)",
                     .target = &queue, .min = 1, .max = 1'000'000});
    ladder::Options options = ladder::parse_options(argc, argv, kStep, flags);
    // A loop per CPU; more workers than CPUs (asleep in /work, a worker costs
    // no CPU); a few jobs' queue per worker (a burst waits, a flood hears 503
    // at once). Echo never leaves its loop: no workers.
    int cpus = ladder::usable_cpus(), workers = options.workers ? options.workers : 4 * cpus;
    workers = options.mode == ladder::Mode::http ? workers : 0;
    io_threads = io_threads ? io_threads : cpus;
    queue = queue ? queue : 8 * std::max(1, workers);
    ladder::install_stop_handlers();
    ladder::raise_fd_limit();
    ladder::Stats stats(kStep.number, ladder::to_string(options.mode), workers);
    ladder::Fd listener = ladder::listen_tcp(options.host, options.port, true);
    Pool pool{.capacity = std::size_t(queue)};
    Loops loops;
    for (int id = 0; id < io_threads; ++id) {
        loops.push_back(std::unique_ptr<Loop>(new Loop{
            .id = id, .mode = options.mode, .stats = stats, .timeouts = timeouts, .pool = pool}));
        Loop& loop = *loops.back();
        if (!loop.epoll || !loop.timer || !loop.wake)
            ladder::throw_sys("epoll_create1, timerfd_create or eventfd");
        itimerspec every_second{.it_interval = {1, 0}, .it_value = {1, 0}};
        if (::timerfd_settime(loop.timer.get(), 0, &every_second, nullptr) != 0)
            ladder::throw_sys("timerfd_settime");
        watch(loop, EPOLL_CTL_ADD, loop.timer.get(), EPOLLIN);  // LT: read at each report
        watch(loop, EPOLL_CTL_ADD, loop.wake.get(), EPOLLIN);
    }
    stats.set_extra([&](std::string& out) { append_json(out, loops, pool); });
    // A stop: the acceptor returns, the loops drain, then the pool stops.
    std::atomic<bool> failed = false;
    {
        std::vector<std::jthread> threads;
        try {
            for (int id = 0; id < workers; ++id)
                pool.workers.emplace_back(work, std::ref(pool), std::ref(stats.worker(id)));
            for (auto& loop : loops)
                threads.emplace_back(run, std::ref(*loop), std::ref(failed));
            ladder::announce_listening(listener);
            run_acceptor(listener, loops, stats);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "step-09: %s\n", e.what());
            failed = true;
            ladder::request_stop();
        }
        acceptor_done = true;
    }  // ~jthread joins: every loop has drained and returned
    {  // the loops outlived the workers, which post to them; now drop the jobs
       // still waiting, and let each worker finish the one in its hands
        std::lock_guard lock(pool.mutex);
        pool.stopping = true;
        pool.queue.clear();
    }
    pool.ready.notify_all();
    pool.workers.clear();  // ~jthread joins
    if (failed) return 1;
    std::printf("%s\n", stats.json().c_str());
    return 0;
} catch (const std::exception& e) {
    return ladder::report_fatal(kStep.program, e);
}

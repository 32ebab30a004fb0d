// Step 10 — coroutines on epoll: Go's netpoller in C++20.
// Adds:    co_await on read, send and accept4: EAGAIN parks the coroutine; epoll_wait resumes it.
// Why:     step 02's straight-line handler per connection at an event loop's cost: a frame, no thread.
// Costs:   no preemption: a /cpu holds its whole scheduler; a function that waits is a coroutine too.
// Observe: make step-10; make test-steps PYTEST_ARGS='-k "10 and coroutines"'
//
//   serve():  co_await read ──EAGAIN──▶ park on its PollDesc             (gopark)
//   run():    epoll_wait ──ready PollDescs──▶ run queue ──▶ resume()     (netpoll, goready)
//
// Thread rule: a scheduler, its coroutines and their frames belong to one
// thread; a coroutine never moves. Threads share only the counters.

#include "conn.h"
#include "error.h"
#include "net.h"
#include "options.h"
#include "session.h"
#include "signals.h"
#include "stats.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstdio>
#include <exception>
#include <functional>
#include <optional>
#include <queue>
#include <span>
#include <string>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <unordered_set>
#include <utility>
#include <vector>

namespace {

using ladder::Clock;
using Steady = std::chrono::steady_clock;

constexpr ladder::StepInfo kStep{
    .summary = "Step 10 — coroutines on epoll: one straight-line coroutine per connection.",
};
constexpr int kMaxEvents = 256;  // ready fds taken per epoll_wait; the rest wait for the next
std::atomic<std::uint64_t> live_coroutines{0};  // every scheduler's: the stats' gauge

// -- the task: a coroutine, and who owns its frame
//
// A Task does not start when called: spawn() hands it to a scheduler, which
// owns the frame from then on. It runs until it awaits, and stops at its
// end (final_suspend) so that the scheduler, not the coroutine, destroys it.
struct Task {
    struct promise_type;
    using Handle = std::coroutine_handle<promise_type>;
    struct promise_type {
        Task get_return_object() noexcept { return {Handle::from_promise(*this)}; }
        std::suspend_always initial_suspend() const noexcept { return {}; }
        std::suspend_always final_suspend() const noexcept { return {}; }
        void return_void() const noexcept {}
        void unhandled_exception() const { throw; }  // out of resume(): the server stops
    };
    Handle handle;
};

// -- the scheduler: one epoll instance, a run queue and timers, per thread

struct Scheduler;

// A descriptor as the scheduler knows it (Go's pollDesc): who is parked on
// it, for what, until when. It lives in its coroutine's frame; epoll's
// events carry its address. One coroutine per connection, so one waiter
// (Go has two, rg and wg: one goroutine may read while another writes).
struct PollDesc {
    Scheduler& sched;
    int fd;
    Clock::time_point* deadline;  // a wait past it ends with ETIMEDOUT (null: none)
    Task::Handle waiter = {};     // parked here, or none
    std::uint32_t events = 0;     // what wakes it: EPOLLIN or EPOLLOUT
    int woken_by = 0;             // 0: ready; ETIMEDOUT or ECANCELED: why else it woke
    bool cancellable = false;     // between requests: a stop may end the wait
    bool registered = false;      // in the epoll interest list (and in sched.descs)
    ~PollDesc();
};

struct Timer {
    Steady::time_point at;
    Task::Handle sleeper;
    bool operator>(const Timer& other) const noexcept { return at > other.at; }
};

struct Scheduler {
    ladder::Mode mode;
    ladder::Stats& stats;
    ladder::Timeouts timeouts;
    ladder::WorkerCounters& worker;  // this scheduler's own counts, in stats
    ladder::Fd epoll;
    std::unordered_set<void*> live = {};  // the frames it owns: spawned, not returned
    std::vector<Task::Handle> runq = {};         // runnable, in order (Go's runq)
    std::vector<Task::Handle> running = {};      // the batch being resumed
    std::vector<PollDesc*> descs = {};           // the registered ones, by fd
    std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers = {};
    // Every read lands here, then is copied into its session: a parked
    // connection holds no read buffer (nginx frees an idle keep-alive's too).
    std::vector<char> scratch = std::vector<char>(ladder::kReadSize);
    bool stopping = false;

    // Go's `go f()`: runnable on this scheduler's next turn (runqput).
    void spawn(Task task) {
        live.insert(task.handle.address());
        runq.push_back(task.handle);
        live_coroutines.fetch_add(1, std::memory_order_relaxed);
    }

    // Destroys a frame: its destructors run where it stands (the session's
    // buffers are freed, the socket closes and leaves epoll's list). Called
    // once its body has returned, or at the end for what is still suspended.
    void destroy(std::coroutine_handle<> h) noexcept {
        h.destroy();
        live_coroutines.fetch_sub(1, std::memory_order_relaxed);
    }
    ~Scheduler() {
        for (void* frame : live)  // a long /work, a half-sent request ...
            destroy(std::coroutine_handle<>::from_address(frame));
    }

    // [snip:park]
    // gopark: the coroutine's call said EAGAIN. The descriptor joins the
    // epoll list the first time (Go does it when the socket is made), for
    // both directions and edge-triggered: one event per change, and whoever
    // waits then is woken. False: do not sleep (a stop, between requests).
    bool park(PollDesc& desc, std::uint32_t wanted, bool cancellable, Task::Handle h) {
        desc.woken_by = stopping && cancellable ? ECANCELED : 0;
        if (desc.woken_by) return false;
        if (!desc.registered) {
            epoll_event ev{.events = EPOLLIN | EPOLLOUT | EPOLLET, .data = {.ptr = &desc}};
            if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, desc.fd, &ev) != 0)
                ladder::throw_sys("epoll_ctl(fd " + std::to_string(desc.fd) + ")");
            descs.resize(std::max(descs.size(), std::size_t(desc.fd) + 1));
            descs[std::size_t(desc.fd)] = &desc;
            desc.registered = true;
        }
        desc.waiter = h;
        desc.events = wanted;
        desc.cancellable = cancellable;
        return true;
    }

    // goready: the parked coroutine is runnable again, and will learn why.
    void wake(PollDesc& desc, int why) {
        desc.woken_by = why;
        runq.push_back(std::exchange(desc.waiter, {}));
    }
    // [/snip]
};

PollDesc::~PollDesc() {
    if (registered) sched.descs[std::size_t(fd)] = nullptr;  // its socket closes right after
}

// -- the awaiters: what a coroutine can wait for

// [exercise:io]
// [snip:io]
// co_await read(desc, room), send(desc, bytes), accept(desc): a non-blocking
// system call, made as Go's net.Conn makes it. The call first; only if it
// says EAGAIN does the coroutine park on the descriptor until epoll_wait
// reports it ready, and then the call is made again. The result is the
// call's, or -errno: errno would not survive the wait (others run and set it).
struct Io {
    enum class Call { read, send, accept } call;
    PollDesc& desc;
    std::span<char> room = {};  // read
    std::string_view out = {};  // send
    bool cancellable = false;   // a stop may end the wait (ECANCELED)
    ssize_t result = 0;
    bool waited = false;

    bool attempt() noexcept {  // false: EAGAIN
        ssize_t n;
        do {
            if (call == Call::read)
                n = ::read(desc.fd, room.data(), room.size());
            else if (call == Call::send)  // MSG_NOSIGNAL: a client gone is EPIPE, not SIGPIPE
                n = ::send(desc.fd, out.data(), out.size(), MSG_NOSIGNAL);
            else
                n = ::accept4(desc.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        } while (n < 0 && errno == EINTR);
        result = n < 0 ? -errno : n;
        return result != -EAGAIN;
    }
    bool await_ready() noexcept { return attempt(); }
    bool await_suspend(Task::Handle h) {
        waited = true;
        return desc.sched.park(desc, call == Call::send ? EPOLLOUT : EPOLLIN, cancellable, h);
    }
    ssize_t await_resume() noexcept {
        if (!waited) return result;
        if (desc.woken_by == ETIMEDOUT) return -ETIMEDOUT;  // its deadline came first
        // Woken by a stop: what arrived before it is still taken; else ECANCELED.
        if (!attempt() && desc.woken_by != 0) return -desc.woken_by;
        return result;  // EAGAIN once more is possible: the caller just waits again
    }
};
// [/snip]
// [/exercise]

Io read(PollDesc& desc, std::span<char> room, bool cancellable) {
    return {.call = Io::Call::read, .desc = desc, .room = room, .cancellable = cancellable};
}
Io send(PollDesc& desc, std::string_view out) {
    return {.call = Io::Call::send, .desc = desc, .out = out};
}
Io accept(PollDesc& desc) { return {.call = Io::Call::accept, .desc = desc, .cancellable = true}; }

// co_await sleep_for(s, 300ms): park on the scheduler's timers (Go's
// time.Sleep; its timers set netpoll's timeout as these set epoll_wait's).
struct Sleep {
    Scheduler& sched;
    Steady::time_point at;
    bool await_ready() const noexcept { return false; }
    void await_suspend(Task::Handle h) { sched.timers.push({at, h}); }
    void await_resume() const noexcept {}
};
Sleep sleep_for(Scheduler& s, std::chrono::milliseconds ms) { return {s, Steady::now() + ms}; }

// -- the coroutines: one per connection, and the listener's

// [snip:serve]
// One connection, start to end: step 02's serve() and send_all(), with
// co_await where its thread slept. The send loop is written out here: only
// a coroutine's own body can suspend, so a send_all() that waits would have
// to be a coroutine too, with a frame of its own. The frame holds it all:
// socket, session, deadline, and the PollDesc (declared after the socket: it goes first).
Task serve(Scheduler& s, ladder::Fd socket) {
    ladder::Conn c(std::move(socket), s.mode, s.stats);
    PollDesc desc{.sched = s, .fd = c.fd.get(), .deadline = &c.deadline};
    std::optional<ladder::SlowJob> job;  // a /work or /cpu the session has handed out
    c.session.set_offload([&job](const ladder::SlowJob& j) {
        job = j;
        return true;
    });
    c.session.count_requests_in(&s.worker.requests);
    c.deadline = s.timeouts.deadline(Clock::now(), false);
    while (!c.session.done()) {
        if (job) {
            ladder::SlowJob j = *std::exchange(job, std::nullopt);
            if (j.kind == ladder::SlowJob::work) {  // parked on a timer: the others run
                co_await sleep_for(s, std::chrono::milliseconds(j.arg));
                c.session.complete("worked " + std::to_string(j.arg) + " ms\n");
            } else {  // on this thread, and nothing else runs on it meanwhile
                c.session.complete(ladder::run_slow_job(j));
            }  // complete() answers the requests queued behind the job, too
        } else {
            ssize_t n = co_await read(desc, s.scratch, !c.session.mid_request());
            if (n > 0) {
                c.session.input().append({s.scratch.data(), std::size_t(n)});
                c.session.process();
            } else if (n == 0) {
                c.session.on_eof();  // the client's FIN: answer what is complete, then close
            } else if (n != -EAGAIN) {
                c.session.abort();  // ECONNRESET, ETIMEDOUT, ECANCELED: nothing more to say
            }
        }
        while (!c.session.output().empty()) {
            c.rearm(Clock::now(), s.timeouts);
            ssize_t n = co_await send(desc, c.session.output().readable());
            if (n >= 0)
                c.session.output().consume(std::size_t(n));
            else if (n != -EAGAIN)
                c.session.abort();  // EPIPE, ECONNRESET, ETIMEDOUT: this client only
            c.session.process();    // answers held back by the high-water mark, if any
        }
        c.rearm(Clock::now(), s.timeouts);
    }
    ladder::bump(s.stats.counters().closed);
}
// [/snip]

// [snip:accept]
// The listener's coroutine, Go's `for { c := ln.Accept(); go serve(c) }`.
// It owns the listener: at a stop it takes the clients already queued,
// then returns, and the listener closes with its frame.
Task accept_clients(Scheduler& s, ladder::Fd listener) {
    PollDesc desc{.sched = s, .fd = listener.get(), .deadline = nullptr};
    for (;;) {
        ssize_t fd = co_await accept(desc);
        if (fd >= 0) {
            ladder::bump(s.stats.counters().accepted);
            ladder::bump(s.worker.accepted);
            ladder::bump(s.worker.connections);
            s.spawn(serve(s, ladder::Fd(int(fd))));
        } else if (fd == -EMFILE || fd == -ENFILE) {
            // Out of descriptors: turn one waiting client away, then let the
            // others run (their closes free descriptors); nobody to refuse:
            // look again in 100 ms. Never a spin, never a starved scheduler.
            bool refused = ladder::refuse_one_client(listener, int(-fd), s.stats.counters());
            co_await sleep_for(s, std::chrono::milliseconds(refused ? 0 : 100));
        } else if (fd == -ECANCELED) {
            co_return;  // a stop, and the queue is empty
        } else if (fd != -EAGAIN && !ladder::client_gone_before_accept(int(-fd))) {
            ladder::throw_sys("accept4", int(-fd));
        }
    }
}
// [/snip]

// -- the loop

// A stop: every wait between requests is woken. Each makes its call once
// more (the acceptor takes the queued clients, a read the request that has
// just come) and, when nothing came, sees ECANCELED: its coroutine returns.
// Waits in the middle of a request go on, until the give-up time.
void on_stop(Scheduler& s) {
    ladder::request_stop();  // stop_fd is a signalfd: the signal is pending, now it is seen
    s.stopping = true;
    if (::epoll_ctl(s.epoll.get(), EPOLL_CTL_DEL, ladder::stop_fd(), nullptr) != 0)
        ladder::throw_sys("epoll_ctl(stop fd)");  // it stays readable: stop watching
    for (PollDesc* d : s.descs)
        if (d && d->waiter && d->cancellable) s.wake(*d, ECANCELED);
}

// Once a second: a wait past its connection's deadline (the header or idle
// timeout, common/timeouts.h) ends with ETIMEDOUT. Go arms a timer per
// deadline instead (SetReadDeadline).
void expire(Scheduler& s) {
    Clock::time_point now = Clock::now();
    for (PollDesc* d : s.descs)
        if (d && d->waiter && d->deadline && now >= *d->deadline) {
            ladder::bump(s.stats.counters().timeouts);
            s.wake(*d, ETIMEDOUT);
        }
}

// [snip:scheduler-loop]
// Go's schedule() and netpoll(): run everything runnable, in order (what it
// makes runnable runs in the next batch), destroying the frames whose body
// has returned; then sleep in epoll_wait until a descriptor is ready, a
// timer is due (the nearest one is the timeout), or the sweep is. Only the
// coroutines parked on the descriptors that come back are resumed.
void run(Scheduler& s) {
    ladder::Sweep sweep;
    for (;;) {
        while (!s.runq.empty()) {
            std::swap(s.runq, s.running);
            for (Task::Handle h : s.running) {
                h.resume();
                if (h.done()) {  // its body has returned: the frame goes now
                    s.live.erase(h.address());
                    s.destroy(h);
                }
            }
            s.running.clear();
        }
        if (s.live.empty() || (s.stopping && ladder::drain_given_up())) return;
        int wait_ms = sweep.wait_ms(Clock::now());
        if (!s.timers.empty())
            wait_ms = std::clamp(int(std::chrono::ceil<std::chrono::milliseconds>(
                                         s.timers.top().at - Steady::now()).count()), 0, wait_ms);
        epoll_event events[kMaxEvents];
        int ready = ::epoll_wait(s.epoll.get(), events, kMaxEvents, wait_ms);
        ladder::bump(s.stats.counters().wakeups);
        ladder::bump(s.worker.wakeups);
        if (ready < 0) {
            if (errno == EINTR) continue;
            ladder::throw_sys("epoll_wait");
        }
        for (int i = 0; i < ready; ++i) {
            auto* desc = static_cast<PollDesc*>(events[i].data.ptr);
            if (desc == nullptr)
                on_stop(s);
            // EPOLLHUP and EPOLLERR come whether asked for or not: the call reports them.
            else if (desc->waiter && (events[i].events & (desc->events | EPOLLHUP | EPOLLERR)))
                s.wake(*desc, 0);
        }
        for (Steady::time_point now = Steady::now();
             !s.timers.empty() && s.timers.top().at <= now; s.timers.pop())
            s.runq.push_back(s.timers.top().sleeper);
        if (sweep.due(Clock::now())) expire(s);
    }
}
// [/snip]

// [snip:reuseport]
// Scheduler i's listener, as in step 08: SO_REUSEPORT, set before bind(),
// lets every scheduler bind the same address, and the kernel hashes each
// new connection to one of them. A connection stays on its scheduler.
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

// Scheduler i's epoll, made before the ready line as its listener is: a
// descriptor limit lowered once clients may come cannot fail the start.
ladder::Fd open_epoll() {
    ladder::Fd epoll(::epoll_create1(EPOLL_CLOEXEC));
    if (!epoll) ladder::throw_sys("epoll_create1");
    epoll_event ev{.events = EPOLLIN, .data = {.ptr = nullptr}};  // no PollDesc: the stop
    if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, ladder::stop_fd(), &ev) != 0)
        ladder::throw_sys("epoll_ctl(stop fd)");
    return epoll;
}

// One scheduler, made, run and destroyed on the calling thread: its frames
// never meet another thread.
void run_scheduler(const ladder::Options& options, ladder::Stats& stats,
                   ladder::Timeouts timeouts, ladder::Fd listener, ladder::Fd epoll, int i) {
    Scheduler s{.mode = options.mode, .stats = stats, .timeouts = timeouts,
                .worker = stats.worker(i), .epoll = std::move(epoll)};
    s.spawn(accept_clients(s, std::move(listener)));
    run(s);
}

// --threads N: a thread per scheduler, as step 08's workers; they share
// nothing but the counters. One that fails stops the server, and main
// reports why.
void run_threads(const ladder::Options& options, ladder::Stats& stats, ladder::Timeouts timeouts,
                 std::vector<ladder::Fd>& listeners, std::vector<ladder::Fd>& epolls) {
    std::vector<std::exception_ptr> failures(listeners.size() + 1);
    std::vector<std::thread> threads;
    try {
        for (std::size_t i = 0; i < listeners.size(); ++i)
            threads.emplace_back([&, i] {
                try {
                    run_scheduler(options, stats, timeouts, std::move(listeners[i]),
                                  std::move(epolls[i]), int(i));
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
    int threads = 1;
    flags.push_back({.name = "threads",
                     .help = "schedulers, a thread and a SO_REUSEPORT listener each (default 1)",
                     .target = &threads, .min = 1, .max = 1024});
    ladder::Options options = ladder::parse_options(argc, argv, kStep, flags);
    ladder::install_stop_handlers();
    ladder::raise_fd_limit();
    ladder::Stats stats(kStep.number, ladder::to_string(options.mode), threads);
    stats.set_extra([](std::string& out) {
        ladder::json_field(out, "coroutines", live_coroutines.load(std::memory_order_relaxed));
    });
    std::vector<ladder::Fd> listeners, epolls;
    for (int i = 0; i < threads; ++i) {  // with --port 0 the first gets a port; the others join it
        listeners.push_back(open_listener(options, i == 0 ? options.port
                                                          : ladder::local_port(listeners[0])));
        epolls.push_back(open_epoll());
    }
    ladder::announce_listening(listeners[0]);
    if (threads == 1)
        run_scheduler(options, stats, timeouts, std::move(listeners[0]), std::move(epolls[0]), 0);
    else
        run_threads(options, stats, timeouts, listeners, epolls);
    std::printf("%s\n", stats.json().c_str());
    return 0;
} catch (const std::exception& e) {
    return ladder::report_fatal(kStep.program, e);
}

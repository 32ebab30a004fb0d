// loop.cpp — one I/O thread's epoll loop (see loop.h for the thread rules).
//
// Step 06's edge-triggered loop, plus what a loop needs once it is one of N:
// an inbox (eventfd) for connections and answers from other threads, a
// timerfd for the timeouts, a read budget per connection per pass, and the
// offload hook that sends /work and /cpu to the pool.
#include "loop.h"

#include "error.h"
#include "net.h"
#include "signals.h"

#include <cassert>
#include <cstdio>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include <utility>

namespace step09 {

using ladder::Clock;
using ladder::Conn;
using ladder::IoResult;
using ladder::Want;

namespace {

constexpr int kMaxEvents = 256;  // ready fds per epoll_wait; the rest wait for the next
constexpr int kReadBudget = 4;   // reads (of up to 64 KiB) per connection per pass
constexpr long kTickMs = 1000;   // the timeout sweep, as in steps 03-06
constexpr long kDrainTickMs = 100;  // while stopping: look at the drain often

// EPOLLRDHUP: the event says when the peer has sent its FIN (on_readable
// needs to know).
std::uint32_t events_for(Want want) {
    return EPOLLET | EPOLLRDHUP | (want.read ? EPOLLIN : 0u) | (want.write ? EPOLLOUT : 0u);
}

}  // namespace

// -- the inbox

Inbox::Inbox() : wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (!wake_) ladder::throw_sys("eventfd");
}

void Inbox::ring() {
    std::uint64_t one = 1;
    // EAGAIN: the counter is at its maximum, so the loop is due to wake anyway.
    if (::write(wake_.get(), &one, sizeof one) < 0 && errno != EAGAIN)
        ladder::throw_sys("write(eventfd)");
}

// Order matters: reset the counter first, then take the mail. A post that
// lands in between is in this batch and its ring only causes one spare
// wake-up; taking first could swallow the ring of a post made just after,
// and that post would wait for some unrelated event.
Mail Inbox::take() {
    std::uint64_t count = 0;
    if (::read(wake_.get(), &count, sizeof count) < 0 && errno != EAGAIN)
        ladder::throw_sys("read(eventfd)");
    std::lock_guard lock(mutex_);
    return std::exchange(mail_, {});
}

// -- construction and the hand-offs (any thread)

IoLoop::IoLoop(int id, ladder::Mode mode, ladder::Stats& stats, ladder::Timeouts timeouts,
               WorkerPool& pool)
    : id_(id), mode_(mode), stats_(stats), timeouts_(timeouts), pool_(pool) {
    epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
    if (!epoll_) ladder::throw_sys("epoll_create1");
    timer_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
    if (!timer_) ladder::throw_sys("timerfd_create(CLOCK_MONOTONIC)");
    arm_timer(kTickMs);
    // Level-triggered: each is read, and so reset, whenever it is reported.
    watch(EPOLL_CTL_ADD, inbox_.fd(), EPOLLIN);
    watch(EPOLL_CTL_ADD, timer_.get(), EPOLLIN);
}

void IoLoop::adopt(ladder::Fd socket) {
    inbox_.post([&](Mail& m) { m.conns.push_back(std::move(socket)); });
}

void IoLoop::post_result(Ticket ticket, std::string body) {
    inbox_.post([&](Mail& m) { m.results.push_back({ticket, std::move(body)}); });
}

void IoLoop::quit() {
    inbox_.post([](Mail& m) { m.quit = true; });
}

void IoLoop::append_json(std::string& out) const {
    auto n = [](const std::atomic<std::uint64_t>& c) { return std::to_string(c.load()); };
    std::uint64_t closed = counters_.closed.load();  // first: "open" is never negative
    out += "{\"id\":" + std::to_string(id_) + ",\"accepted\":" + n(counters_.accepted) +
           ",\"open\":" + std::to_string(counters_.accepted.load() - closed) +
           ",\"wakeups\":" + n(counters_.wakeups) +
           ",\"requests\":" + n(counters_.requests) +
           ",\"offloaded\":" + n(counters_.offloaded) +
           ",\"rejected_503\":" + n(counters_.rejected) +
           ",\"deferred\":" + n(counters_.deferred) + "}";
}

// -- the loop (its own thread from here on)

void IoLoop::run() noexcept {
    thread_ = std::this_thread::get_id();
    try {
        // SIGTERM belongs to the acceptor: its accept() then returns EINTR.
        ladder::block_stop_signals_in_this_thread();
        loop();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "step-09: I/O loop %d: %s\n", id_, e.what());
        failed_.store(true);
        ladder::request_stop();
    }
    conns_.for_each([this](Conn& c) { close_conn(c); });  // what the drain gave up on
}

void IoLoop::loop() {
    ladder::Drain drain;
    auto close = [this](Conn& c) { close_conn(c); };
    while (!(quit_ && drain.finished(conns_, close))) {
        epoll_event events[kMaxEvents];
        // No timeout to compute: the timerfd wakes us. But input the budget
        // left unread must not wait for an event that will never come.
        int timeout = deferred_.empty() ? -1 : 0;
        int ready = ::epoll_wait(epoll_.get(), events, kMaxEvents, timeout);
        ladder::bump(stats_.counters().wakeups);
        ladder::bump(counters_.wakeups);
        if (ready < 0) {
            if (errno == EINTR) continue;
            ladder::throw_sys("epoll_wait");
        }
        dispatch(events, ready);
    }
}

// One pass, in the seed's order: timers first (so their intervals stay
// honest), then socket I/O, then "other things": the hand-offs that rang
// the eventfd, and the connections the read budget cut short last pass.
void IoLoop::dispatch(const epoll_event* events, int ready) {
    assert(in_loop_thread());
    std::vector<Ticket> behind = std::exchange(deferred_, {});
    bool tick = false;
    bool mail = false;
    for (int i = 0; i < ready; ++i) {
        tick |= events[i].data.fd == timer_.get();
        mail |= events[i].data.fd == inbox_.fd();
    }
    if (tick) on_tick();
    for (int i = 0; i < ready; ++i) {
        // Null: the timerfd, the eventfd, or a client closed earlier this pass.
        // A deferred client is read below, in its turn.
        Conn* c = conns_.find(events[i].data.fd);
        if (c == nullptr || side_[c->fd.get()].deferred) continue;
        std::uint32_t got = events[i].events;
        bool closed = got & (EPOLLRDHUP | EPOLLHUP | EPOLLERR);
        settle(*c, (got & EPOLLIN) || closed ? on_readable(*c, closed) : answer(*c));
    }
    if (mail) on_mail();
    for (Ticket t : behind) {
        Conn* c = find(t);
        if (c == nullptr || !side_[t.fd].deferred) continue;
        side_[t.fd].deferred = false;
        settle(*c, on_readable(*c, true));  // no event to say: read to EAGAIN
    }
}

void IoLoop::on_tick() {
    assert(in_loop_thread());
    std::uint64_t expirations = 0;
    if (::read(timer_.get(), &expirations, sizeof expirations) < 0 && errno != EAGAIN)
        ladder::throw_sys("read(timerfd)");
    conns_.close_expired(Clock::now(), [this](Conn& c) {
        ladder::bump(stats_.counters().timeouts);
        close_conn(c);
    });
}

void IoLoop::on_mail() {
    assert(in_loop_thread());
    Mail mail = inbox_.take();
    for (ladder::Fd& socket : mail.conns) adopt_now(std::move(socket));
    for (Result& result : mail.results) on_result(result);
    if (mail.quit && !quit_) {
        quit_ = true;
        arm_timer(kDrainTickMs);
    }
}

void IoLoop::adopt_now(ladder::Fd socket) {
    assert(in_loop_thread());
    int fd = socket.get();
    Conn& c = conns_.add(std::move(socket), mode_, stats_);
    if (side_.size() <= std::size_t(fd)) side_.resize(fd + 1);
    side_[fd] = {.serial = ++next_serial_};
    c.session.count_requests_in(&counters_.requests);
    Ticket ticket = ticket_of(c);
    c.session.set_offload([this, ticket](const ladder::SlowJob& job) {
        return offload(ticket, job);
    });
    c.deadline = timeouts_.deadline(Clock::now(), false);
    ladder::bump(counters_.accepted);
    // Bytes that arrived before this ADD are not lost: adding a ready socket
    // queues its event at once, edge-triggered or not.
    watch(EPOLL_CTL_ADD, fd, events_for(c.want));
}

// Runs inside Session::process(), on this thread. False: the queue is full
// and the session answers 503 with Retry-After.
bool IoLoop::offload(Ticket ticket, const ladder::SlowJob& job) {
    assert(in_loop_thread());
    // The reply carries the ticket, not the connection: the worker never
    // sees a Conn, it only posts the body back to this loop.
    auto reply = [this, ticket](std::string body) {
        post_result(ticket, std::move(body));
    };
    if (!pool_.try_submit({job, std::move(reply)})) {
        ladder::bump(counters_.rejected);
        return false;
    }
    side_[ticket.fd].job_out = true;
    ladder::bump(counters_.offloaded);
    return true;
}

void IoLoop::on_result(Result& result) {
    assert(in_loop_thread());
    Conn* c = find(result.ticket);
    if (c == nullptr) return;  // the client left while its job ran: no one to answer
    side_[result.ticket.fd].job_out = false;
    c->session.complete(result.body);  // answers it, and what was pipelined behind it
    settle(*c, answer(*c));
}

// ET reports a change, not a state: read until the socket is empty, as in
// step 06 (EAGAIN, or a short read unless the peer's FIN came with the
// bytes: `peer_closed`) — but at most kReadBudget reads per pass. A client that sends as fast as we read
// never lets read() say EAGAIN, and every other connection of this loop
// would wait behind it. Stopped early, no new edge will come for the bytes
// still in the socket: the loop remembers the connection (deferred_) and
// reads it again next pass, after everyone else.
Want IoLoop::on_readable(Conn& c, bool peer_closed) {
    assert(in_loop_thread());
    for (int reads = 1;; ++reads) {
        IoResult r = ladder::read_some(c.fd, c.session.input());
        if (r.kind == IoResult::eof)
            c.session.on_eof();
        else if (r.kind == IoResult::error)
            c.session.abort();
        Want want = answer(c);
        if (r.kind != IoResult::ok || !want.read) return want;
        if (r.drained && !peer_closed) return want;
        if (reads == kReadBudget) {
            side_[c.fd.get()].deferred = true;
            deferred_.push_back(ticket_of(c));
            ladder::bump(counters_.deferred);
            return want;
        }
    }
}

// Conn::answer (common/conn.h) answers what has arrived — cheap routes
// here; /work and /cpu go to the pool through the offload hook — sends what
// the socket takes now, and says what to wait for next.
Want IoLoop::answer(Conn& c) {
    assert(in_loop_thread());
    Want want = c.answer(timeouts_);
    // A connection waiting for a worker is not idle: the server is the slow one.
    if (side_[c.fd.get()].job_out) c.deadline = Clock::time_point::max();
    return want;
}

// Closes a finished connection, or brings the kernel's interest list in
// line with what it wants. EPOLLOUT only while output is pending: the seed's
// rule — a socket with room in its send buffer is writable nearly always.
void IoLoop::settle(Conn& c, Want want) {
    assert(in_loop_thread());
    if (c.session.done()) return close_conn(c);
    if (want.read != c.want.read || want.write != c.want.write)
        watch(EPOLL_CTL_MOD, c.fd.get(), events_for(want));
    c.want = want;
}

void IoLoop::close_conn(Conn& c) {
    assert(in_loop_thread());
    ladder::bump(stats_.counters().closed);
    ladder::bump(counters_.closed);
    conns_.remove(c);  // closing the socket also takes it off the epoll list
}

Conn* IoLoop::find(Ticket ticket) noexcept {
    assert(in_loop_thread());
    Conn* c = conns_.find(ticket.fd);
    return c != nullptr && side_[ticket.fd].serial == ticket.serial ? c : nullptr;
}

Ticket IoLoop::ticket_of(const Conn& c) const noexcept {
    assert(in_loop_thread());
    return {c.fd.get(), side_[c.fd.get()].serial};
}

void IoLoop::watch(int op, int fd, std::uint32_t events) {
    epoll_event ev{.events = events, .data = {.fd = fd}};
    if (::epoll_ctl(epoll_.get(), op, fd, &ev) != 0)
        ladder::throw_sys("epoll_ctl(fd " + std::to_string(fd) + ")");
}

// A periodic timerfd: readable every `ms`, and epoll watches it like a socket.
void IoLoop::arm_timer(long ms) {
    timespec every{.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1'000'000};
    itimerspec spec{.it_interval = every, .it_value = every};
    if (::timerfd_settime(timer_.get(), 0, &spec, nullptr) != 0)
        ladder::throw_sys("timerfd_settime");
}

}  // namespace step09

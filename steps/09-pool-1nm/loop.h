// loop.h — the N in 1+N+M: one epoll loop per I/O thread (muduo: "one loop
// per thread"), and the inbox through which other threads reach it.
//
//   acceptor ── adopt(fd) ─────────┐
//   worker ──── post_result(body) ─┼─▶ Inbox ──eventfd──▶ this loop's epoll_wait
//   main ────── quit() ────────────┘   (mutex)
//
// Thread rules. A loop's connections — the ConnTable, every Session, every
// client socket — are touched by the loop's own thread and no other; each
// member function that touches them asserts in_loop_thread(). Other threads
// use only the three hand-offs above: they append to the inbox under its
// mutex and ring its eventfd, and the loop does the rest. So no connection
// needs a lock, and no two threads ever write to one socket.
#pragma once

#include "conn.h"
#include "fd.h"
#include "options.h"
#include "pool.h"
#include "stats.h"
#include "timeouts.h"

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

struct epoll_event;

namespace step09 {

// Names one connection of one loop. The fd alone is not enough: a client
// can leave while its job runs, and the kernel then hands its number to the
// next client. The serial tells the old connection's answer from the new one.
struct Ticket {
    int fd = -1;
    std::uint64_t serial = 0;
};

// A worker's answer for the connection `ticket`.
struct Result {
    Ticket ticket;
    std::string body;
};

// What other threads have handed to a loop since it last looked.
struct Mail {
    std::vector<ladder::Fd> conns;  // from the acceptor
    std::vector<Result> results;    // from the workers
    bool quit = false;              // from main, once the acceptor has stopped
    bool empty() const noexcept { return conns.empty() && results.empty() && !quit; }
};

// The loop's door: producers are any thread, the consumer is the loop.
// The eventfd is a counter the kernel can watch: epoll reports it readable
// while it is non-zero, so a hand-off wakes a loop asleep in epoll_wait.
class Inbox {
public:
    Inbox();
    int fd() const noexcept { return wake_.get(); }

    // Any thread. Rings only when the mail was empty: one wake-up per batch,
    // however many hand-offs arrive before the loop looks.
    template <class Put>
    void post(Put put) {
        bool was_empty = false;
        {
            std::lock_guard lock(mutex_);
            was_empty = mail_.empty();
            put(mail_);
        }
        if (was_empty) ring();
    }

    // Loop thread: everything posted so far.
    Mail take();

private:
    void ring();

    ladder::Fd wake_;  // eventfd
    std::mutex mutex_;
    Mail mail_;  // guarded by mutex_
};

// Per-loop counts for the stats JSON. Written by the loop, read by whoever
// serves /stats: relaxed atomics, like common/stats.h.
struct LoopCounters {
    std::atomic<std::uint64_t> accepted{0};   // connections adopted
    std::atomic<std::uint64_t> closed{0};
    std::atomic<std::uint64_t> wakeups{0};    // returns from epoll_wait
    std::atomic<std::uint64_t> requests{0};   // answers sent (echo: reads echoed)
    std::atomic<std::uint64_t> offloaded{0};  // jobs handed to the pool
    std::atomic<std::uint64_t> rejected{0};   // jobs the full queue refused: 503
    std::atomic<std::uint64_t> deferred{0};   // reads cut short by the read budget
};

class IoLoop {
public:
    IoLoop(int id, ladder::Mode mode, ladder::Stats& stats, ladder::Timeouts timeouts,
           WorkerPool& pool);
    IoLoop(const IoLoop&) = delete;
    IoLoop& operator=(const IoLoop&) = delete;

    // Any thread: the hand-offs. They only post to the inbox.
    void adopt(ladder::Fd socket);  // a new client, from the acceptor
    void post_result(Ticket ticket, std::string body);  // from a worker
    void quit();  // from main, after request_stop(): drain, then return from run()

    // Any thread.
    const LoopCounters& counters() const noexcept { return counters_; }
    bool failed() const noexcept { return failed_.load(); }
    void append_json(std::string& out) const;  // {"id":..,"accepted":..,...}

    // The thread that calls run() becomes the loop's thread until it returns.
    void run() noexcept;

private:
    struct Side {  // what the loop knows of a Conn beyond common's Conn, by fd
        std::uint64_t serial = 0;
        bool job_out = false;   // a worker has its job: no timeout applies
        bool deferred = false;  // in deferred_: input left after the read budget
    };

    bool in_loop_thread() const noexcept { return std::this_thread::get_id() == thread_; }
    void loop();
    void dispatch(const epoll_event* events, int ready);
    void on_tick();
    void on_mail();
    void adopt_now(ladder::Fd socket);
    void on_result(Result& result);
    bool offload(Ticket ticket, const ladder::SlowJob& job);
    ladder::Want on_readable(ladder::Conn& c, bool peer_closed);
    ladder::Want answer(ladder::Conn& c);
    void resume_deferred();
    void settle(ladder::Conn& c, ladder::Want want);
    void close_conn(ladder::Conn& c);
    ladder::Conn* find(Ticket ticket) noexcept;
    Ticket ticket_of(const ladder::Conn& c) const noexcept;
    void watch(int op, int fd, std::uint32_t events);
    void arm_timer(long ms);

    // Set at construction, then read-only: any thread.
    const int id_;
    const ladder::Mode mode_;
    ladder::Stats& stats_;
    const ladder::Timeouts timeouts_;
    WorkerPool& pool_;
    LoopCounters counters_;
    std::atomic<bool> failed_{false};
    Inbox inbox_;
    ladder::Fd epoll_;
    ladder::Fd timer_;  // timerfd: the loop's clock, as a descriptor epoll can watch

    // The loop thread's alone.
    std::thread::id thread_;
    ladder::ConnTable conns_;
    std::vector<Side> side_;
    std::vector<Ticket> deferred_;
    std::uint64_t next_serial_ = 0;
    bool quit_ = false;
};

}  // namespace step09

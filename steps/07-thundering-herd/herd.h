// herd.h — step 07: the ways N workers can share one listening port.
//
// A client's handshake completes in the kernel; the connection waits in a
// listener's accept queue, the listener turns readable, and the kernel wakes
// whoever waits on it. Who that is depends on --variant:
//
//   variant    workers    asleep on the listener             woken per connection
//   ---------  ---------  ---------------------------------  ----------------------------
//   blocking   processes  every worker, in accept()          one: accept waits exclusively
//   shared-lt  threads    every worker's epoll set (LT)      every idle worker: the herd
//   shared-et  threads    every worker's epoll set (ET)      every idle worker: the herd
//   exclusive  threads    every set, with EPOLLEXCLUSIVE     one idle worker, first in line
//   mutex      threads    the set of the mutex holder        one: the holder (nginx)
//   acceptor   threads    one acceptor thread, in accept()   the acceptor; it hands on
//   reuseport  threads    each worker its own listener       one: the kernel picks by hash
//
// server.cpp is step 06's loop, which every worker thread runs; herd.cpp
// holds what differs per variant.
#pragma once

#include "conn.h"
#include "fd.h"
#include "net.h"
#include "options.h"
#include "stats.h"
#include "timeouts.h"

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace herd {

enum class Variant {
    blocking, shared_lt, shared_et, exclusive, mutex, acceptor, reuseport
};

inline constexpr std::string_view kVariants =
    "blocking|shared-lt|shared-et|exclusive|mutex|acceptor|reuseport";
Variant parse_variant(std::string_view name);

// What the workers share. Set up before they start; afterwards only the
// mutex and the counters change.
struct Herd {
    Variant variant;
    ladder::Mode mode;
    ladder::Stats& stats;
    ladder::Timeouts timeouts;
    ladder::ListenOptions listen;
    ladder::Fd listener;      // the shared listener (reuseport: worker 0's own)
    std::mutex accept_mutex;  // mutex: whoever holds it watches the listener
};

// Connections the acceptor thread hands to one worker.
struct Inbox {
    std::mutex mutex;
    std::vector<ladder::Fd> fds;
    ladder::Fd wake;  // an eventfd in the worker's epoll set: "look in the inbox"
};

// One worker's loop: one thread, one epoll set, the connections it serves
// (step 06's Loop, plus what a worker needs to share the port).
// Thread rule: after setup only the worker's own thread touches it, the
// inbox excepted.
struct Loop {
    Loop(Herd& h, int worker_id);

    int listener = -1;  // where it accepts from (-1: the acceptor hands fds over)
    ladder::Mode mode;
    ladder::Stats& stats;
    ladder::Timeouts timeouts;
    ladder::ConnTable conns;
    ladder::Fd epoll;
    Herd& herd;
    int id;
    ladder::WorkerCounters& worker;   // this loop's own counts, in stats
    ladder::Fd own_listener;          // reuseport: this worker's listener
    std::uint32_t listen_events = 0;  // how the listener sits in this epoll set
    bool watching = false;            // whether it sits there now
    Inbox inbox;
};

using Loops = std::vector<std::unique_ptr<Loop>>;

// herd.cpp — what differs per variant.
ladder::Fd open_listener(Variant variant, ladder::ListenOptions o, std::uint16_t port);
void setup(Loop& loop);
std::unique_lock<std::mutex> take_accept_mutex(Loop& loop, bool stopping);
void on_handoff(Loop& loop);
void run_acceptor(Herd& herd, Loops& loops);
void run_blocking(Herd& herd, int workers);
void add_herd_json(ladder::Stats& stats, std::string_view variant, std::string& out);

// server.cpp — the loop.
void watch(Loop& loop, int op, int fd, std::uint32_t events);
void adopt(Loop& loop, ladder::Fd fd);
long sleeps();
void count_silent_wakeups(ladder::WorkerCounters& w, long sleeps_before);

}  // namespace herd

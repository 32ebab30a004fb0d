// herd.h — step 07: N workers, one listening port, and the ways they can
// share it.
//
// A client's handshake completes in the kernel; the connection waits in a
// listener's accept queue, the listener turns readable, and the kernel
// wakes whoever waits on it. Who that is depends on --variant:
//
//   variant    workers    asleep on the listener             woken per connection
//   ---------  ---------  ---------------------------------  ---------------------------
//   blocking   processes  every worker, in accept4()         one: accept waits exclusively
//   shared-lt  threads    every worker's epoll set (LT)      every idle worker: the herd
//   shared-et  threads    every worker's epoll set (ET)      every idle worker: the herd
//   exclusive  threads    every set, with EPOLLEXCLUSIVE     one idle worker, first in line
//   mutex      threads    the set of the mutex holder        one: the holder (nginx)
//   acceptor   threads    one acceptor thread, in poll()     the acceptor; it hands on
//   reuseport  threads    each worker its own listener       one: the kernel picks by hash
//
// server.cpp is step 06's loop, which every worker thread runs; each
// variant is one file (shared.cpp, mutex.cpp, acceptor.cpp, reuseport.cpp,
// blocking.cpp) that fills in the same small table, Variant, as redis's
// ae_epoll.c and ae_select.c fill in theirs.
#pragma once

#include "conn.h"
#include "fd.h"
#include "options.h"
#include "stats.h"
#include "timeouts.h"

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string_view>
#include <vector>

namespace herd {

struct Loop;
struct Herd;
using Loops = std::vector<std::unique_ptr<Loop>>;

// What one variant does differently. Only `name` and `setup` are required.
struct Variant {
    std::string_view name;
    // Before the workers start: the listener every worker (or the acceptor) uses.
    ladder::Fd (*open_listener)(const ladder::Options& options);
    // On each worker, before its loop: put the listener (or an inbox) in its epoll set.
    void (*setup)(Loop& loop);
    // Before each epoll_wait: may change what is watched; returns how long to wait.
    int (*before_wait)(Loop& loop, int wait_ms) = nullptr;
    // After the listener's events of one pass (before the clients are served).
    void (*after_accepts)(Loop& loop) = nullptr;
    // The main thread, while the workers run (default: it waits for them).
    void (*run_main)(Herd& herd, Loops& loops) = nullptr;
};

extern const Variant kShared_lt, kShared_et, kExclusive, kMutex, kAcceptor, kReuseport;
// blocking runs processes, not epoll workers: it has its own main (blocking.cpp).
void run_blocking(Herd& herd, int workers);

// What the workers share. Set up before they start; afterwards only the
// mutex and the counters change.
struct Herd {
    const Variant& variant;
    const ladder::Options& options;
    ladder::Stats& stats;
    ladder::Timeouts timeouts;
    ladder::Fd listener;      // the shared listener (reuseport: worker 0's own)
    std::mutex accept_mutex;  // mutex: whoever holds it watches the listener
    // acceptor: false until run_acceptor has returned. Until then it may hand
    // a worker clients it took before the stop: no worker may end its drain.
    std::atomic<bool> acceptor_done{true};
};

// Connections the acceptor thread hands to one worker: it appends under the
// mutex and writes the eventfd, which sits in the worker's epoll set.
struct Inbox {
    std::mutex mutex;
    std::vector<ladder::Fd> fds;  // guarded by mutex
    ladder::Fd wake;              // eventfd: "look in the inbox"
};

// One worker: step 06's Loop, and what a worker needs to share the port.
// Thread rule: after setup only the worker's own thread touches it, the
// inbox excepted.
struct Loop {
    Herd& herd;
    int id;
    ladder::Mode mode;
    ladder::Stats& stats;
    ladder::Timeouts timeouts;
    ladder::WorkerCounters& worker;   // this worker's counts, in stats
    ladder::Fd epoll;
    int listener = -1;                // where it accepts (-1: the acceptor hands fds over)
    std::uint32_t listen_events = 0;  // how the listener sits in this epoll set
    bool watching = false;            // whether it sits there now
    bool holding = false;             // mutex: this worker holds the accept mutex
    ladder::Fd own_listener = {};     // reuseport: this worker's own
    Inbox inbox = {};                 // acceptor
    ladder::ConnTable conns = {};
};

// server.cpp: the loop's pieces the variants use.
void watch(Loop& loop, int op, int fd, std::uint32_t events);
void watch_listener(Loop& loop, std::uint32_t events);  // ADD it, remember how
void adopt(Loop& loop, ladder::Fd fd);                  // a client joins this loop
ladder::Fd listen_blocking(const ladder::Options& options);
ladder::Fd listen_nonblocking(const ladder::Options& options);
long sleeps();  // voluntary context switches of this thread
void count_silent_wakeups(ladder::WorkerCounters& w, long sleeps_before);

}  // namespace herd

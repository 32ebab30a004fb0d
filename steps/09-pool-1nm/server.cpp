// Step 09 — the 1+N+M pool: one acceptor, N I/O loops, M workers.
// Adds:    hand-offs between threads (inbox + eventfd, a bounded job queue); timerfd.
// Why:     a slow /work holds a worker, not a loop: /hello on that loop answers at once.
// Costs:   a lock and a wake-up per hand-off; a full queue must answer 503.
// Observe: make step-09; make test-steps PYTEST_ARGS='-k "09 and pool"'
//
// This file is the 1 (the acceptor) and the order of things at start and
// stop. loop.h: the N, and the rule that only a loop's own thread touches
// its connections. pool.h: the M and the bounded queue.

#include "error.h"
#include "loop.h"
#include "net.h"
#include "options.h"
#include "pool.h"
#include "signals.h"
#include "stats.h"

#include <algorithm>
#include <cstdio>
#include <memory>
#include <optional>
#include <sched.h>
#include <string>
#include <thread>
#include <vector>

namespace {

using Loops = std::vector<std::unique_ptr<step09::IoLoop>>;

constexpr ladder::StepInfo kStep{
    .program = "step-09",
    .summary = "Step 09 — 1 acceptor + N epoll loops + M workers behind a bounded queue.",
    .has_workers = true,
};

struct Config {
    int io_threads = 0;  // 0: one per CPU
    int workers = 0;     // 0: four per CPU
    int queue = 0;       // 0: eight jobs per worker
    ladder::Timeouts timeouts;

    std::vector<ladder::Flag> flags() {
        std::vector<ladder::Flag> f = timeouts.flags();
        f.push_back({.name = "io-threads",
                     .help = "I/O loops, one epoll thread each (default: one per CPU)",
                     .target = &io_threads, .min = 1, .max = 256});
        f.push_back({.name = "queue",
                     .help = "jobs that may wait for a worker, then 503 (default 8 per worker)",
                     .target = &queue, .min = 1, .max = 1'000'000});
        return f;
    }
};

// Defaults: an I/O loop per CPU (they only move bytes and parse); more
// workers than CPUs, because /work sleeps and a sleeping worker costs no
// CPU; a queue a few jobs deep per worker, so a burst waits briefly and a
// flood hears 503 at once. Echo never leaves its loop: no workers at all.
void apply_defaults(Config& c, const ladder::Options& options) {
    int n = ladder::usable_cpus();
    if (c.io_threads == 0) c.io_threads = n;
    if (options.mode == ladder::Mode::echo)
        c.workers = 0;
    else
        c.workers = options.workers ? options.workers : 4 * n;
    if (c.queue == 0) c.queue = 8 * std::max(1, c.workers);
}

// Owns the loops' threads. Its destructor is the order of a stop, on every
// way out of main: the loops drain and return, then the pool stops. Loops
// outlive the workers, which may still be posting answers to them.
class Running {
public:
    Running(Loops& loops, step09::WorkerPool& pool) : loops_(loops), pool_(pool) {
        try {
            for (auto& loop : loops_)
                threads_.emplace_back([l = loop.get()] { l->run(); });
        } catch (...) {
            stop();
            throw;
        }
    }
    ~Running() { stop(); }
    Running(const Running&) = delete;
    Running& operator=(const Running&) = delete;

private:
    void stop() {
        ladder::request_stop();  // already so, unless main is leaving on an error
        for (auto& loop : loops_) loop->quit();
        threads_.clear();  // ~jthread joins: each loop has drained and returned
        pool_.stop();
    }

    Loops& loops_;
    step09::WorkerPool& pool_;
    std::vector<std::jthread> threads_;
};

// The 1. This thread waits for nothing else, so a blocking accept() will do;
// the new socket goes to the next loop in turn (round-robin, as muduo's
// EventLoopThreadPool::getNextLoop), through that loop's inbox. A stop shuts
// the listener down (wake_on_stop) and accept() returns.
void accept_loop(ladder::FdRef listener, Loops& loops, ladder::Stats& stats) {
    std::size_t next = 0;
    while (!ladder::stop_requested()) {
        bool refused = false;
        std::optional<ladder::Fd> fd = ladder::try_accept(listener, true, &refused);
        ladder::bump(stats.counters().wakeups);
        if (refused) ladder::bump(stats.counters().refused);
        if (!fd) continue;
        ladder::bump(stats.counters().accepted);
        loops[next]->adopt(std::move(*fd));
        next = (next + 1) % loops.size();
    }
}

// ,"io_threads":N,"queue":{...},"loops":[{...},...] after the common stats.
void append_extra(std::string& out, const Loops& loops, const step09::WorkerPool& pool) {
    out += ",\"io_threads\":" + std::to_string(loops.size());
    pool.append_json(out);
    out += ",\"loops\":[";
    for (std::size_t i = 0; i < loops.size(); ++i) {
        if (i) out += ",";
        loops[i]->append_json(out);
    }
    out += "]";
}

bool any_failed(const Loops& loops, const step09::WorkerPool& pool) {
    return pool.failed() ||
           std::any_of(loops.begin(), loops.end(), [](auto& l) { return l->failed(); });
}

}  // namespace

int main(int argc, char** argv) try {
    Config config;
    std::vector<ladder::Flag> flags = config.flags();
    ladder::Options options = ladder::parse_options(argc, argv, kStep, flags);
    apply_defaults(config, options);
    ladder::install_stop_handlers();
    ladder::raise_fd_limit();
    ladder::Stats stats("09", ladder::to_string(options.mode), config.workers);
    // Blocking: the acceptor sleeps in accept(). Client sockets are
    // non-blocking (try_accept's flag): the loops need that.
    ladder::Fd listener =
        ladder::listen_tcp({.host = options.host, .port = options.port});
    step09::WorkerPool pool(config.workers, std::size_t(config.queue), stats);
    Loops loops;
    for (int i = 0; i < config.io_threads; ++i)
        loops.push_back(std::make_unique<step09::IoLoop>(i, options.mode, stats,
                                                         config.timeouts, pool));
    stats.set_extra([&](std::string& out) { append_extra(out, loops, pool); });
    {
        Running running(loops, pool);
        int slot = ladder::wake_on_stop(listener.get());
        ladder::announce_listening(listener);
        accept_loop(listener, loops, stats);
        ladder::forget_on_stop(slot);
    }
    if (any_failed(loops, pool)) return 1;  // the thread said why on stderr
    std::printf("%s\n", stats.json().c_str());
    return 0;
} catch (const std::exception& e) {
    return ladder::report_fatal(kStep.program, e);
}

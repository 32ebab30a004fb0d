// stats.h — the counters every step keeps, printed as one JSON line.
//
// The same JSON is printed on stdout when the server stops and served at
// GET /stats. Counters are relaxed atomics: threaded steps bump them from
// many threads, and a reader only needs each number, not a consistent
// snapshot of all of them.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace ladder {

struct Counters {
    std::atomic<std::uint64_t> accepted{0};   // connections accepted
    std::atomic<std::uint64_t> closed{0};     // connections closed
    std::atomic<std::uint64_t> refused{0};    // accepted, then closed at once (a limit)
    std::atomic<std::uint64_t> requests{0};   // HTTP requests answered / echo reads
    std::atomic<std::uint64_t> bytes_in{0};
    std::atomic<std::uint64_t> bytes_out{0};
    std::atomic<std::uint64_t> wakeups{0};    // returns from accept/select/poll/epoll_wait
    std::atomic<std::uint64_t> timeouts{0};   // connections closed by a timer
};

// Per-worker counts, for steps that have workers (threads or processes).
struct WorkerCounters {
    std::atomic<std::uint64_t> wakeups{0};
    std::atomic<std::uint64_t> accepted{0};
    std::atomic<std::uint64_t> wasted_wakeups{0};  // woken, then nothing to do (EAGAIN)
    // Woken, then put back to sleep inside the wait call (the readiness was
    // gone when the kernel re-checked): seen only as a context switch.
    std::atomic<std::uint64_t> silent_wakeups{0};
    std::atomic<std::uint64_t> requests{0};
    std::atomic<std::uint64_t> connections{0};  // served: accepted here, or handed to it
};

class Stats {
public:
    Stats(std::string_view step, std::string_view mode, int workers = 0);
    Stats(const Stats&) = delete;  // one set of counters per server
    Stats& operator=(const Stats&) = delete;

    Counters& counters() noexcept { return *counters_; }
    const Counters& counters() const noexcept { return *counters_; }
    int worker_count() const noexcept { return workers_; }
    WorkerCounters& worker(int i) noexcept;

    // Moves the counters (with their values) into a MAP_SHARED mapping so
    // that children created by fork() count into the same numbers as the
    // parent. Call before the first fork.
    void share_across_fork();

    // Extra "key":value pairs a step wants in its JSON (appended verbatim,
    // each starting with a comma). With workers that serve connections the
    // line also says how the connections were spread: "shares" (each
    // worker's connections / all), Jain's "fairness" J = (Σx)² / (n·Σx²)
    // (1: all served as many, 1/n: one served them all), and
    // "wasted_per_connection" ((wasted + silent wake-ups) / connections).
    void set_extra(std::function<void(std::string&)> extra) { extra_ = std::move(extra); }

    std::string json() const;

private:
    struct Shared;
    std::string step_;
    std::string mode_;
    int workers_;
    std::shared_ptr<Shared> storage_;
    Counters* counters_;
    WorkerCounters* worker_counters_;
    std::function<void(std::string&)> extra_;
};

// ,"key":value — one field of a JSON object being written (the stats line
// and the fields a step adds to it with set_extra). Doubles get 4 decimals.
void json_field(std::string& out, std::string_view key, std::uint64_t value);
void json_field(std::string& out, std::string_view key, double value);
void json_field(std::string& out, std::string_view key, std::string_view text);  // quoted

// ,"key":[{"id":0,"wakeups":...},...]: one object per set of counts (the
// stats line's "workers"; step 09 also lists its I/O loops this way).
void json_workers(std::string& out, std::string_view key,
                  std::span<const WorkerCounters* const> each);

// Convenience: relaxed increment.
inline void bump(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) noexcept {
    c.fetch_add(n, std::memory_order_relaxed);
}

}  // namespace ladder

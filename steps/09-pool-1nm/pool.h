// pool.h — the M in 1+N+M: worker threads behind one bounded queue.
//
//   I/O loop ──try_submit──▶ [ job | job | job ]  (at most M running + `capacity` waiting)
//                                  │ one condition variable
//                    worker 0 … worker M-1: run_slow_job(), then job.reply(body)
//
// The pool knows nothing about connections: a Job carries what to compute
// and where to send the answer. reply() runs on the worker thread, so it
// must only hand the body back to the loop that owns the connection
// (IoLoop::post_result), never touch the connection itself.
//
// Thread rules: try_submit() and the counters: any thread. stop(): the
// thread that made the pool, once every I/O loop has stopped.
#pragma once

#include "session.h"
#include "stats.h"

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace step09 {

struct Job {
    ladder::SlowJob what;
    std::function<void(std::string body)> reply;  // called on the worker thread
};

class WorkerPool {
public:
    // Starts `workers` threads (0: a pool that refuses everything, for echo
    // mode). Worker i counts into stats.worker(i).
    WorkerPool(int workers, std::size_t capacity, ladder::Stats& stats);
    ~WorkerPool() { stop(); }
    WorkerPool(const WorkerPool&) = delete;
    WorkerPool& operator=(const WorkerPool&) = delete;

    // Queues the job, or returns false at once when the pool already holds
    // workers + capacity jobs (every worker busy, `capacity` waiting): the
    // caller answers 503. Never blocks — an I/O loop waiting here would
    // stall every connection it owns.
    bool try_submit(Job job);

    // Drops the jobs still waiting (their connections are closed by now),
    // lets each worker finish the job in its hands, and joins them.
    void stop();

    bool failed() const noexcept { return failed_.load(); }

    // ,"queue":{...}: capacity, waiting now, running now, refused so far.
    void append_json(std::string& out) const;

private:
    void work(int id);
    bool take(Job& job, ladder::WorkerCounters& mine);

    ladder::Stats& stats_;
    const std::size_t workers_;
    const std::size_t capacity_;
    std::mutex mutex_;
    std::condition_variable ready_;
    std::deque<Job> queue_;  // guarded by mutex_
    bool stopping_ = false;  // guarded by mutex_
    // Jobs waiting or running: raised under mutex_ (check, then add), lowered
    // by a worker when its job is done.
    std::atomic<std::size_t> held_{0};
    std::atomic<std::size_t> waiting_{0};  // queue_.size(), readable without the lock
    std::atomic<std::size_t> running_{0};
    std::atomic<std::uint64_t> rejected_{0};
    std::atomic<bool> failed_{false};
    std::vector<std::jthread> threads_;  // last: started once the members above exist
};

}  // namespace step09

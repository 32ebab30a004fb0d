// pool.cpp — M worker threads and their bounded queue (see pool.h).
#include "pool.h"

#include "signals.h"

#include <cstdio>

namespace step09 {

WorkerPool::WorkerPool(int workers, std::size_t capacity, ladder::Stats& stats)
    : stats_(stats), workers_(std::size_t(workers)), capacity_(capacity) {
    try {
        for (int id = 0; id < workers; ++id)
            threads_.emplace_back([this, id] { work(id); });
    } catch (...) {
        stop();  // the workers already started would otherwise wait forever
        throw;
    }
}

bool WorkerPool::try_submit(Job job) {
    {
        std::lock_guard lock(mutex_);
        // The bound counts running jobs too, not the queue alone: a burst that
        // arrives before the idle workers have woken to take it still fits.
        if (stopping_ || workers_ == 0 || held_.load() >= workers_ + capacity_) {
            ladder::bump(rejected_);
            return false;
        }
        held_.fetch_add(1);
        queue_.push_back(std::move(job));
        waiting_.store(queue_.size());
    }
    // One job, one sleeper woken: notify_all would wake M workers to race
    // for it and M-1 would go back to sleep (the herd of step 07, in user
    // space).
    ready_.notify_one();
    return true;
}

void WorkerPool::stop() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
        held_.fetch_sub(queue_.size());
        queue_.clear();
        waiting_.store(0);
    }
    ready_.notify_all();
    threads_.clear();  // ~jthread joins: each worker ends after its current job
}

// Waits for a job. False when the pool is stopping. `mine` counts the
// returns from wait(): a return that finds the queue empty (another worker
// was faster, or a spurious wake-up) is wasted.
bool WorkerPool::take(Job& job, ladder::WorkerCounters& mine) {
    std::unique_lock lock(mutex_);
    while (queue_.empty() && !stopping_) {
        ready_.wait(lock);
        ladder::bump(mine.wakeups);
        if (queue_.empty() && !stopping_) ladder::bump(mine.wasted_wakeups);
    }
    if (stopping_) return false;
    job = std::move(queue_.front());
    queue_.pop_front();
    waiting_.store(queue_.size());
    running_.fetch_add(1);
    return true;
}

void WorkerPool::work(int id) try {
    // SIGTERM belongs to the acceptor: its accept() then returns EINTR.
    ladder::block_stop_signals_in_this_thread();
    ladder::WorkerCounters& mine = stats_.worker(id);
    Job job;
    while (take(job, mine)) {
        // The lock is not held here: a job that sleeps 10 s holds only its
        // own worker, and the others keep taking jobs.
        std::string body = ladder::run_slow_job(job.what);
        ladder::bump(mine.requests);
        job.reply(std::move(body));
        job = {};
        running_.fetch_sub(1);
        held_.fetch_sub(1);
    }
} catch (const std::exception& e) {
    std::fprintf(stderr, "step-09: worker %d: %s\n", id, e.what());
    failed_.store(true);
    ladder::request_stop();
}

void WorkerPool::append_json(std::string& out) const {
    out += ",\"queue\":{\"capacity\":" + std::to_string(capacity_) +
           ",\"waiting\":" + std::to_string(waiting_.load()) +
           ",\"running\":" + std::to_string(running_.load()) +
           ",\"rejected_503\":" + std::to_string(rejected_.load()) + "}";
}

}  // namespace step09

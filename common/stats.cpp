#include "stats.h"

#include "error.h"

#include <cassert>
#include <new>
#include <sys/mman.h>

namespace ladder {

// The counters live in one block: either ordinary heap memory, or a shared
// anonymous mapping that survives fork() as the same physical pages.
struct Stats::Shared {
    std::size_t bytes = 0;
    void* block = nullptr;
    bool mapped = false;

    explicit Shared(int workers) : bytes(sizeof(Counters) + workers * sizeof(WorkerCounters)) {
        block = ::operator new(bytes);
    }
    ~Shared() {
        if (mapped)
            ::munmap(block, bytes);
        else
            ::operator delete(block);
    }
};

namespace {

void construct(void* block, int workers, Counters*& counters, WorkerCounters*& per_worker) {
    counters = new (block) Counters{};
    per_worker = reinterpret_cast<WorkerCounters*>(static_cast<char*>(block) + sizeof(Counters));
    for (int i = 0; i < workers; ++i) new (per_worker + i) WorkerCounters{};
}

void field(std::string& out, std::string_view key, std::uint64_t value) {
    out += ",\"";
    out += key;
    out += "\":";
    out += std::to_string(value);
}

std::uint64_t load(const std::atomic<std::uint64_t>& c) {
    return c.load(std::memory_order_relaxed);
}

void copy(const Counters& from, Counters& to) {
    to.accepted = load(from.accepted);
    to.closed = load(from.closed);
    to.refused = load(from.refused);
    to.requests = load(from.requests);
    to.bytes_in = load(from.bytes_in);
    to.bytes_out = load(from.bytes_out);
    to.wakeups = load(from.wakeups);
    to.timeouts = load(from.timeouts);
}

void copy(const WorkerCounters& from, WorkerCounters& to) {
    to.wakeups = load(from.wakeups);
    to.accepted = load(from.accepted);
    to.wasted_wakeups = load(from.wasted_wakeups);
    to.silent_wakeups = load(from.silent_wakeups);
    to.requests = load(from.requests);
    to.connections = load(from.connections);
}

}  // namespace

Stats::Stats(std::string_view step, std::string_view mode, int workers)
    : step_(step), mode_(mode), workers_(workers), storage_(std::make_shared<Shared>(workers)) {
    construct(storage_->block, workers_, counters_, worker_counters_);
}

WorkerCounters& Stats::worker(int i) noexcept {
    assert(i >= 0 && i < workers_);
    return worker_counters_[i];
}

void Stats::share_across_fork() {
    if (storage_->mapped) return;
    void* block = ::mmap(nullptr, storage_->bytes, PROT_READ | PROT_WRITE,
                         MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (block == MAP_FAILED) throw_sys("mmap(MAP_SHARED, stats)");
    Counters* counters = nullptr;
    WorkerCounters* per_worker = nullptr;
    construct(block, workers_, counters, per_worker);
    copy(*counters_, *counters);
    for (int i = 0; i < workers_; ++i) copy(worker_counters_[i], per_worker[i]);
    ::operator delete(storage_->block);
    storage_->block = block;
    storage_->mapped = true;
    counters_ = counters;
    worker_counters_ = per_worker;
}

std::string Stats::json() const {
    const Counters& c = *counters_;
    std::string out = "{\"step\":\"" + step_ + "\",\"mode\":\"" + mode_ + "\"";
    // closed is read first: a connection that comes and goes between the two
    // reads can then only make "open" too high, never negative.
    std::uint64_t closed = load(c.closed);
    std::uint64_t accepted = load(c.accepted);
    field(out, "accepted", accepted);
    field(out, "closed", closed);
    field(out, "open", accepted - closed);
    field(out, "refused", load(c.refused));
    field(out, "requests", load(c.requests));
    field(out, "bytes_in", load(c.bytes_in));
    field(out, "bytes_out", load(c.bytes_out));
    field(out, "wakeups", load(c.wakeups));
    field(out, "timeouts", load(c.timeouts));
    if (workers_ > 0) {
        out += ",\"workers\":[";
        for (int i = 0; i < workers_; ++i) {
            const WorkerCounters& w = worker_counters_[i];
            out += i ? ",{" : "{";
            out += "\"id\":" + std::to_string(i);
            field(out, "wakeups", load(w.wakeups));
            field(out, "accepted", load(w.accepted));
            field(out, "wasted_wakeups", load(w.wasted_wakeups));
            field(out, "silent_wakeups", load(w.silent_wakeups));
            field(out, "requests", load(w.requests));
            field(out, "connections", load(w.connections));
            out += "}";
        }
        out += "]";
    }
    if (extra_) extra_(out);
    out += "}";
    return out;
}

}  // namespace ladder

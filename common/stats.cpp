#include "stats.h"

#include "error.h"

#include <cassert>
#include <cstdio>
#include <new>
#include <vector>
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

void key(std::string& out, std::string_view name) {
    out += ",\"";
    out += name;
    out += "\":";
}

}  // namespace

void json_field(std::string& out, std::string_view name, std::uint64_t value) {
    key(out, name);
    out += std::to_string(value);
}

void json_field(std::string& out, std::string_view name, double value) {
    char text[32];
    std::snprintf(text, sizeof text, "%.4f", value);
    key(out, name);
    out += text;
}

void json_field(std::string& out, std::string_view name, std::string_view text) {
    key(out, name);
    out += '"';
    out += text;
    out += '"';
}

void json_workers(std::string& out, std::string_view name,
                  std::span<const WorkerCounters* const> each) {
    key(out, name);
    out += "[";
    for (std::size_t i = 0; i < each.size(); ++i) {
        const WorkerCounters& w = *each[i];
        out += i ? ",{" : "{";
        out += "\"id\":" + std::to_string(i);
        json_field(out, "wakeups", load(w.wakeups));
        json_field(out, "accepted", load(w.accepted));
        json_field(out, "wasted_wakeups", load(w.wasted_wakeups));
        json_field(out, "silent_wakeups", load(w.silent_wakeups));
        json_field(out, "requests", load(w.requests));
        json_field(out, "connections", load(w.connections));
        out += "}";
    }
    out += "]";
}

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
    json_field(out, "accepted", accepted);
    json_field(out, "closed", closed);
    json_field(out, "open", accepted - closed);
    json_field(out, "refused", load(c.refused));
    json_field(out, "requests", load(c.requests));
    json_field(out, "bytes_in", load(c.bytes_in));
    json_field(out, "bytes_out", load(c.bytes_out));
    json_field(out, "wakeups", load(c.wakeups));
    json_field(out, "timeouts", load(c.timeouts));
    if (workers_ > 0) {
        std::vector<const WorkerCounters*> each;
        double sum = 0, squares = 0, wasted = 0;
        for (int i = 0; i < workers_; ++i) {
            const WorkerCounters& w = worker_counters_[i];
            each.push_back(&w);
            auto x = double(load(w.connections));
            sum += x;
            squares += x * x;
            wasted += double(load(w.wasted_wakeups) + load(w.silent_wakeups));
        }
        json_workers(out, "workers", each);
        if (sum > 0) {
            json_field(out, "wasted_per_connection", wasted / sum);
            json_field(out, "fairness", sum * sum / (workers_ * squares));
            out += ",\"shares\":[";
            for (int i = 0; i < workers_; ++i) {
                char share[16];
                std::snprintf(share, sizeof share, "%s%.4f", i ? "," : "",
                              double(load(worker_counters_[i].connections)) / sum);
                out += share;
            }
            out += "]";
        }
    }
    if (extra_) extra_(out);
    out += "}";
    return out;
}

}  // namespace ladder

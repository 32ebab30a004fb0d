// loadgen — drives one server with HTTP or echo requests and prints one JSON
// object with what it measured. See README.md for the flags and the JSON.
//
// Threads: the main thread forks the idle processes if any (before any
// thread exists), starts --threads workers (each an epoll loop over its
// share of the connections), opens the idle connections once the workers'
// are up, holds them quiet for --idle-hold, releases the workers together
// through a barrier, watches the idle connections and prints progress while
// they run, then merges their results. Nothing is shared while they run but
// the progress counters.
#include "config.h"
#include "error.h"
#include "idle.h"
#include "net.h"
#include "signals.h"
#include "worker.h"

#include <algorithm>
#include <arpa/inet.h>
#include <barrier>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <memory>
#include <netinet/in.h>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

using loadgen::Config;
using loadgen::Plan;
using loadgen::Results;

void resolve(Plan& plan) {
    const Config& c = plan.config;
    std::string host = c.host;
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    if (host == "localhost") host = "127.0.0.1";
    auto* v4 = reinterpret_cast<sockaddr_in*>(&plan.address);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&plan.address);
    if (::inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(c.port);
        plan.address_length = sizeof(sockaddr_in);
        plan.target = host + ":" + std::to_string(c.port);
    } else if (::inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(c.port);
        plan.address_length = sizeof(sockaddr_in6);
        plan.target = "[" + host + "]:" + std::to_string(c.port);
    } else {
        throw std::invalid_argument("--host '" + c.host +
                                    "' is not an IPv4 or IPv6 address (try 127.0.0.1)");
    }
}

void build_payload(Plan& plan) {
    const Config& c = plan.config;
    if (c.mode == ladder::Mode::http) {
        std::string request =
            "GET " + c.path + " HTTP/1.1\r\nHost: " + plan.target + "\r\n";
        if (c.new_conn) request += "Connection: close\r\n";
        request += "\r\n";
        plan.unit = request.size();
        for (int i = 0; i < c.pipeline; ++i) plan.requests += request;
        return;
    }
    plan.unit = c.size;
    plan.pool.resize(loadgen::kPoolSpan + c.size);
    std::mt19937_64 rng{std::random_device{}()};
    for (auto& byte : plan.pool) byte = static_cast<char>(rng());
}

// Descriptors: one per connection, plus a few per thread (epoll) and for
// the process itself; the idle connections' own, or two pipes per idle process.
long fd_budget(const Config& c, int threads) {
    return ladder::raise_fd_limit() - (long(c.connections) + 2L * threads + 32);
}

void check_fd_budget(const Config& c, int threads, const loadgen::IdleHolder& idle) {
    long limit = ladder::raise_fd_limit();
    long need = long(c.connections) + idle.descriptors() + 2L * threads + 32;
    if (need > limit)
        throw std::runtime_error(
            "--connections " + std::to_string(c.connections) + " + --idle " +
            std::to_string(c.idle) + " need about " + std::to_string(need) +
            " file descriptors, but this process may open " + std::to_string(limit) +
            "; lower them, hold the idle ones in other processes (--idle-procs), or "
            "raise the hard limit (ulimit -Hn, or LimitNOFILE)");
}

// The progress line --progress asks for: the phase, and the clock scripts
// can line their own events up with (CLOCK_MONOTONIC, as Python's
// time.monotonic()).
void progress_line(const char* phase, std::int64_t start_ns,
                   const std::vector<std::unique_ptr<loadgen::Worker>>& workers,
                   const loadgen::IdleHolder& idle) {
    std::uint64_t req = 0, err = 0;
    for (auto& w : workers) {
        req += w->progress_requests.load(std::memory_order_relaxed);
        err += w->progress_errors.load(std::memory_order_relaxed);
    }
    std::int64_t now = loadgen::now_ns();
    std::fprintf(stderr,
                 "loadgen: progress mono=%.6f t=%.3f phase=%s requests=%llu errors=%llu "
                 "idle=%d\n",
                 double(now) / 1e9, double(now - start_ns) / 1e9, phase,
                 (unsigned long long)req, (unsigned long long)err, idle.held());
}

// Builds one JSON object, key by key, commas included.
class Json {
public:
    Json& raw(const char* key, const std::string& value) {
        out_ += first_ ? "{\"" : ",\"";
        first_ = false;
        out_ += key;
        out_ += "\":";
        out_ += value;
        return *this;
    }
    Json& text(const char* key, std::string_view value) {
        std::string quoted = "\"";
        for (char ch : value) {
            if (static_cast<unsigned char>(ch) < 0x20) continue;
            if (ch == '"' || ch == '\\') quoted += '\\';
            quoted += ch;
        }
        return raw(key, quoted + "\"");
    }
    Json& number(const char* key, std::uint64_t value) {
        return raw(key, std::to_string(value));
    }
    Json& number(const char* key, double value, int decimals) {
        char text[64];
        std::snprintf(text, sizeof text, "%.*f", decimals, value);
        return raw(key, text);
    }
    std::string done() { return (first_ ? "{" : out_) + "}"; }

private:
    std::string out_;
    bool first_ = true;
};

// SIGUSR1 ends --idle-hold early. It stays blocked in every thread (and in
// the idle processes), so it interrupts no call: the hold looks for it.
void block_hold_signal() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    if (int err = ::pthread_sigmask(SIG_BLOCK, &set, nullptr); err != 0)
        ladder::throw_sys("pthread_sigmask(SIGUSR1)", err);
}

bool hold_ended() {
    sigset_t pending;
    return ::sigpending(&pending) == 0 && sigismember(&pending, SIGUSR1) == 1;
}

std::string report(const Plan& plan, const Results& r, int threads, double duration_s,
                   const loadgen::IdleHolder& idle, double held_s) {
    const Config& c = plan.config;
    const auto& h = r.latency;
    Json errors;
    for (int k = 0; k < loadgen::kErrorKinds; ++k)
        errors.number(loadgen::error_name(k).data(), r.errors[std::size_t(k)]);
    Json latency;
    latency.number("p50", h.percentile(50))
        .number("p90", h.percentile(90))
        .number("p99", h.percentile(99))
        .number("p999", h.percentile(99.9))
        .number("max", h.max())
        .number("min", h.min())
        .number("mean", h.mean(), 1);
    std::string histogram;
    h.append_json(histogram);

    Json j;
    j.text("mode", ladder::to_string(c.mode)).text("target", plan.target);
    if (c.mode == ladder::Mode::http) j.text("path", c.path);
    else j.number("size", std::uint64_t(c.size));
    j.number("connections", std::uint64_t(c.connections))
        .number("threads", std::uint64_t(threads))
        .number("pipeline", std::uint64_t(c.pipeline))
        .raw("new_conn", c.new_conn ? "true" : "false")
        .text("loop", c.open_loop() ? "open" : "closed");
    if (c.open_loop()) j.number("rate", c.rate, 1);
    else j.raw("rate", "null");
    if (c.open_loop() && r.send_lag.count() > 0) {
        Json lag;
        lag.number("p50", r.send_lag.percentile(50))
            .number("p99", r.send_lag.percentile(99))
            .number("max", r.send_lag.max());
        j.raw("send_lag_us", lag.done());
    } else {
        j.raw("send_lag_us", "null");
    }
    j.number("warmup_s", c.warmup_s, 3)
        .number("duration_s", duration_s, 3)
        .number("requests", r.requests)
        .raw("errors", errors.done())
        .number("unfinished", r.unfinished)
        .number("rps", duration_s > 0 ? double(r.requests) / duration_s : 0.0, 1)
        .raw("latency_us", latency.done())
        .number("bytes_sent", r.bytes_sent)
        .number("bytes_received", r.bytes_received)
        .number("connects", r.connects)
        .number("idle_requested", std::uint64_t(idle.requested()))
        .number("idle_held", std::uint64_t(idle.held()))
        .number("idle_lost", std::uint64_t(idle.lost()))
        .number("idle_procs", std::uint64_t(idle.procs()))
        .number("idle_sources", std::uint64_t(idle.sources()))
        .number("idle_connect_s", idle.connect_s(), 3)
        .number("idle_hold_s", held_s, 3)
        .raw("histogram", histogram);
    return j.done();
}

int run(const Config& config) {
    ladder::install_stop_handlers();
    block_hold_signal();
    double held_s = 0;  // how long --idle-hold held them, in the end
    int threads = std::min(config.threads, config.connections);

    auto plan = std::make_unique<Plan>();
    plan->config = config;
    resolve(*plan);
    build_payload(*plan);

    loadgen::IdleHolder idle(plan->address, plan->address_length, plan->target, config.idle,
                             config.idle_procs, config.idle_sources,
                             fd_budget(config, threads));
    check_fd_budget(config, threads, idle);
    const double handshake_s = std::max(config.timeout_s, 5.0);
    idle.fork_children(handshake_s);  // now: no thread exists yet

    // Connections and --requests are split as evenly as they go.
    std::vector<std::unique_ptr<loadgen::Worker>> workers;
    const auto total = std::uint64_t(config.connections);
    for (int t = 0, first = 0; t < threads; ++t) {
        int count = config.connections / threads + (t < config.connections % threads);
        std::uint64_t quota = 0;
        for (int id = first; id < first + count; ++id)
            quota +=
                config.requests / total + (std::uint64_t(id) < config.requests % total);
        workers.push_back(std::make_unique<loadgen::Worker>(*plan, first, count, quota));
        first += count;
    }

    // Every worker has its connections before the clock starts.
    auto start_clock = [&plan]() noexcept {
        plan->start_ns = loadgen::now_ns();
        plan->measure_ns = plan->start_ns + std::int64_t(plan->config.warmup_s * 1e9);
        plan->end_ns =
            plan->config.requests > 0
                ? INT64_MAX
                : plan->measure_ns + std::int64_t(plan->config.duration_s * 1e9);
    };
    // The load's connections come first, the idle ones after: a server with
    // a descriptor cap (select's FD_SETSIZE) then still serves the load and
    // refuses idle connections, not the other way round.
    std::barrier connected(threads + 1);
    std::barrier start(threads + 1, start_clock);
    std::atomic<int> running{threads};
    std::vector<std::exception_ptr> failures(static_cast<std::size_t>(threads));
    std::exception_ptr idle_failure;
    std::int64_t began_ns = loadgen::now_ns();  // the idle connections' opening starts
    {
        std::vector<std::jthread> pool;
        for (int t = 0; t < threads; ++t) {
            pool.emplace_back([&, t] {
                auto& w = *workers[std::size_t(t)];
                try {
                    w.connect_all();
                } catch (...) {
                    failures[std::size_t(t)] = std::current_exception();
                }
                connected.arrive_and_wait();
                start.arrive_and_wait();
                try {
                    if (!failures[std::size_t(t)]) w.run();
                } catch (...) {
                    failures[std::size_t(t)] = std::current_exception();
                    ladder::request_stop();
                }
                running.fetch_sub(1);
            });
        }
        connected.arrive_and_wait();
        began_ns = loadgen::now_ns();
        try {
            idle.open(handshake_s);
            // All connected, nothing sent: what holding them costs the server.
            // A script that has measured what it wanted ends it with SIGUSR1.
            if (config.idle_hold_s > 0) {
                if (config.progress_s > 0) progress_line("hold", began_ns, workers, idle);
                std::int64_t from = loadgen::now_ns();
                std::int64_t until = from + std::int64_t(config.idle_hold_s * 1e9);
                while (loadgen::now_ns() < until && !ladder::stop_requested() &&
                       !hold_ended())
                    idle.watch(int(std::clamp<std::int64_t>(
                        (until - loadgen::now_ns()) / 1'000'000 + 1, 1, 50)));
                held_s = double(loadgen::now_ns() - from) / 1e9;
            }
        } catch (...) {
            idle_failure = std::current_exception();
            ladder::request_stop();  // the workers start, see the stop, and return
        }
        start.arrive_and_wait();
        bool tty = ::isatty(STDERR_FILENO);
        const bool lines = config.progress_s > 0;
        const std::int64_t every_ns =
            lines ? std::int64_t(config.progress_s * 1e9) : 1'000'000'000;
        std::int64_t next_line = plan->start_ns + every_ns;
        bool measuring = config.warmup_s <= 0;
        if (lines)
            progress_line(measuring ? "measure" : "warmup", began_ns, workers, idle);
        while (running.load() > 0) {
            std::int64_t now = loadgen::now_ns();
            std::int64_t next = measuring ? next_line : std::min(next_line, plan->measure_ns);
            idle.watch(int(std::clamp<std::int64_t>((next - now) / 1'000'000 + 1, 1, 50)));
            now = loadgen::now_ns();
            if (lines && !measuring && now >= plan->measure_ns) {
                measuring = true;
                progress_line("measure", began_ns, workers, idle);
            }
            if (lines && now >= next_line) {
                progress_line(measuring ? "measure" : "warmup", began_ns, workers, idle);
                next_line += every_ns;
            } else if (tty && now >= next_line) {
                std::uint64_t req = 0, err = 0;
                for (auto& w : workers) {
                    req += w->progress_requests.load(std::memory_order_relaxed);
                    err += w->progress_errors.load(std::memory_order_relaxed);
                }
                std::fprintf(stderr,
                             "\rloadgen: %5.1f s  %llu requests  %llu errors  %d idle ",
                             double(now - plan->start_ns) / 1e9, (unsigned long long)req,
                             (unsigned long long)err, idle.held());
                next_line += 1'000'000'000;
            }
        }
        if (tty) std::fputc('\n', stderr);
    }
    if (idle_failure) std::rethrow_exception(idle_failure);
    for (auto& f : failures)
        if (f) std::rethrow_exception(f);
    idle.watch(0);
    if (config.progress_s > 0) progress_line("done", began_ns, workers, idle);

    Results all;
    for (auto& w : workers) all.merge(w->results());
    double duration_s =
        std::max<double>(0, double(all.stopped_ns - plan->measure_ns) / 1e9);
    std::string json = report(*plan, all, threads, duration_s, idle, held_s);
    std::printf("%s\n", json.c_str());
    std::fflush(stdout);
    idle.finish();
    std::fprintf(
        stderr,
        "loadgen: %llu requests in %.2f s = %.0f/s; latency p50 %llu µs, p99 %llu µs, "
        "max %llu µs; %llu errors\n",
        (unsigned long long)all.requests, duration_s,
        duration_s > 0 ? double(all.requests) / duration_s : 0.0,
        (unsigned long long)all.latency.percentile(50),
        (unsigned long long)all.latency.percentile(99),
        (unsigned long long)all.latency.max(), (unsigned long long)all.error_total());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    auto parsed = loadgen::parse_args(argc, argv);
    if (parsed.help) {
        std::fputs(loadgen::usage().c_str(), stdout);
        return 0;
    }
    if (!parsed.error.empty()) {
        std::fprintf(stderr, "loadgen: %s\n%s", parsed.error.c_str(),
                     loadgen::usage().c_str());
        return 2;
    }
    try {
        return run(parsed.config);
    } catch (const std::exception& e) {
        return ladder::report_fatal("loadgen", e);
    }
}

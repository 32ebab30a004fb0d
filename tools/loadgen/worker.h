// worker.h — one load-generating thread: its own epoll loop over its share of
// the connections.
//
// Every request a connection carries gets a sequence number n and moves
//
//   due ──▶ sent ──▶ done        (open loop: the schedule makes it due;
//                                 closed loop: it is sent as soon as there
//                                 is room, i.e. when an earlier one is done)
//
// and ends as exactly one of: a latency in the histogram, an error of one
// kind, or "unfinished" when the run ends first. Its start time is when it
// was sent (closed loop) or when the schedule wanted it sent (open loop): a
// server that stalls then pays for every request that waited behind the
// stall, not just the one in flight (no coordinated omission).
//
// Thread rule: a Worker and its connections belong to the thread that runs
// it; the only things other threads read are the progress counters.
#pragma once

#include "config.h"
#include "fd.h"
#include "histogram.h"

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <vector>

namespace loadgen {

enum ErrorKind {
    connect_error,
    reset,
    timeout,
    bad_status,
    wrong_bytes,
    closed,
    bad_response,
    kErrorKinds
};
std::string_view error_name(int kind);

struct Results {
    ladder::Histogram latency;  // µs, successful requests only
    // Open loop: how late (µs) a request went out on a connection that was
    // free when it fell due: the load generator's own wake-up delay, which
    // every open-loop latency includes.
    ladder::Histogram send_lag;
    std::uint64_t requests = 0;  // successful
    std::array<std::uint64_t, kErrorKinds> errors{};
    std::uint64_t bytes_sent = 0;
    std::uint64_t bytes_received = 0;
    std::uint64_t unfinished = 0;  // started in the window, not done at its end
    std::uint64_t connects = 0;    // TCP connections established
    std::int64_t stopped_ns = 0;   // when the worker's loop ended

    std::uint64_t error_total() const;
    void merge(const Results& other);
};

// Everything the workers share; read-only once they start.
struct Plan {
    Config config;
    sockaddr_storage address{};
    socklen_t address_length = 0;
    std::string target;      // "127.0.0.1:8080", for messages
    std::string requests;    // http: `pipeline` copies of the request
    std::size_t unit = 0;    // bytes of one request (http) or message (echo)
    std::vector<char> pool;  // echo: random bytes that messages are cut from
    // Set by the start barrier, once every worker has its connections:
    std::int64_t start_ns = 0;    // the open-loop schedule's time zero
    std::int64_t measure_ns = 0;  // start + warmup: recording begins
    std::int64_t end_ns = 0;      // measure + duration (INT64_MAX with --requests)
};

// Bytes of the echo pool that a message can start in.
constexpr std::size_t kPoolSpan = 64 * 1024;

std::int64_t now_ns() noexcept;

// One connection slot. Its socket comes and goes (reconnects, --new-conn);
// its request numbers carry on.
struct Conn {
    ladder::Fd fd;
    int id = 0;                    // global index: its place in the schedule
    std::uint32_t generation = 0;  // bumped per socket: stale events are ignored
    enum State : std::uint8_t { no_socket, connecting, open, draining } state = no_socket;
    bool server_closing = false;        // the last response said Connection: close
    std::int64_t retry_at = 0;          // closed after a failure: not before this
    std::int64_t connect_at = 0;        // when the current connect() began
    std::uint64_t due = 0;              // open loop: requests the schedule released
    std::uint64_t sent = 0;             // requests committed to the socket
    std::uint64_t done = 0;             // requests answered or failed
    std::uint64_t quota = 0;            // open loop with --requests: releases left
    std::uint64_t base = 0;             // the first request on the current socket
    std::uint64_t written = 0;          // bytes written on the current socket
    std::uint64_t received = 0;         // echo: bytes of the oldest message received
    std::vector<std::int64_t> started;  // ring, `pipeline` slots: start times
    // HTTP response framing
    enum Phase : std::uint8_t { head, body, body_to_eof } phase = head;
    int status = 0;
    std::uint64_t body_left = 0;
    std::string carry;  // a response head split across reads
};

class Worker {
public:
    // Connections [first, first + count) of the run; `quota` is this
    // thread's share of --requests (closed loop), per_conn_quota(id) the
    // open loop's.
    Worker(const Plan& plan, int first, int count, std::uint64_t quota);

    // Opens the persistent connections and waits (up to --timeout) until each
    // has connected or failed. Runs before the start barrier.
    void connect_all();
    // The measured run: returns at the end of the duration, when --requests
    // are done, or on SIGINT/SIGTERM.
    void run();

    const Results& results() const { return r_; }
    // For the progress line, read by the main thread.
    std::atomic<std::uint64_t> progress_requests{0};
    std::atomic<std::uint64_t> progress_errors{0};

private:
    std::int64_t intended(const Conn& c, std::uint64_t n) const;
    std::size_t pool_offset(const Conn& c, std::uint64_t n) const;
    bool counting(std::int64_t now) const { return now >= plan_.measure_ns; }

    void open_socket(Conn& c, std::int64_t now);
    void on_connect_failed(Conn& c, std::int64_t now, int err);
    void on_connected(Conn& c, std::int64_t now);
    void close_socket(Conn& c);
    void lost(Conn& c, ErrorKind kind, std::int64_t now, int err = 0);
    void after_close(Conn& c, std::int64_t now, bool backoff);
    void finish(Conn& c, int kind, std::int64_t now);  // kind < 0: success
    void count_error(ErrorKind kind, int err, std::int64_t now);

    void send_more(Conn& c, std::int64_t now);
    void flush(Conn& c, std::int64_t now);
    void on_event(std::uint64_t data, std::uint32_t events, std::int64_t now);
    void on_readable(Conn& c, std::int64_t now, bool to_eof);
    void on_eof(Conn& c, std::int64_t now);
    bool consume_http(Conn& c, const char* p, std::size_t n, std::int64_t now);
    bool consume_echo(Conn& c, const char* p, std::size_t n, std::int64_t now);
    void response_done(Conn& c, std::int64_t now);

    void release_due(std::int64_t now);
    void sweep(std::int64_t now);
    bool finished(std::int64_t now) const;
    int wait(std::int64_t now, std::int64_t until);
    void handle_batch(int n, std::int64_t now);
    void count_unfinished();
    void publish();

    const Plan& plan_;
    const Config& cfg_;
    const bool echo_, open_loop_, new_conn_, limited_;
    const std::size_t depth_;  // --pipeline
    const std::int64_t timeout_ns_;
    ladder::Fd epoll_;
    std::vector<Conn> conns_;
    std::vector<Conn*> touched_;  // open loop: conns given work this batch
    std::vector<char> buffer_;    // every read lands here
    std::vector<iovec> iov_;
    std::vector<struct epoll_event> events_;
    Results r_;
    bool running_ = false;  // false during connect_all: nothing is sent
    bool stop_seen_ = false;
    std::uint64_t quota_left_;    // closed loop with --requests
    std::uint64_t released_ = 0;  // requests made due (open) or sent (closed)
    std::uint64_t finished_ = 0;  // requests done, failed or skipped
    std::size_t exhausted_ = 0;   // open loop: conns whose quota is spent
    std::uint64_t round_ = 0;     // open loop cursor: round and slot
    std::size_t cursor_ = 0;
    std::int64_t next_due_ = INT64_MAX;
    std::int64_t last_progress_ = 0;
    bool gave_up_ = false;
};

}  // namespace loadgen

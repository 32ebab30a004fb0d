// session.h — one connection's protocol state: echo or the HTTP/1.1 subset.
//
// A step owns the socket and decides when to read and write; the session
// owns the bytes. The same calls serve every model, blocking or not:
//
//     read(fd, s.input().writable(kReadSize).data(), kReadSize) -> n
//     s.input().commit(n)  (or s.on_eof() for 0, s.abort() for an error)
//     s.process()          answers what is complete
//     send(fd, s.output().readable()...) -> n;  s.output().consume(n)
//     s.want()  -> what to wait for next      s.done() -> close now
//
//   input()  ──process()──▶  output()
//   bytes read               responses, in request order
//
// During a stop (common/signals.h) every answer says Connection: close, and
// a request that would start after kDrainTime is answered 503.
//
// Thread rule: a Session is used by one thread at a time (its connection's).
#pragma once

#include "buffer.h"
#include "options.h"
#include "stats.h"

#include <cstdint>
#include <functional>
#include <string>

namespace ladder {

struct Request;  // http.h

// What one read() asks for: 64 KiB, a loopback segment's worth several
// times over. A larger request simply takes more reads.
inline constexpr std::size_t kReadSize = 64 * 1024;

// What the connection wants the loop to wait for next (Bendersky's
// want_read/want_write): the loop alone turns this into select/poll/epoll
// interest.
struct Want {
    bool read = true;
    bool write = false;
};

// A request whose answer takes real time: GET /work?ms=N sleeps, GET /cpu?n=N
// hashes. Step 09 hands these to worker threads; every other step runs them
// inline on the connection's thread.
struct SlowJob {
    enum Kind { work, cpu } kind = work;
    std::uint64_t arg = 0;  // milliseconds, or hash rounds
};

// Runs a job on the calling thread and returns the response body.
std::string run_slow_job(const SlowJob& job);

class Session {
public:
    Session(Mode mode, Stats& stats);

    Buffer& input() noexcept { return in_; }
    Buffer& output() noexcept { return out_; }

    // Answers every complete request in input() (echo: copies the bytes),
    // appending responses to output() in order. Stops early while output()
    // holds more than kOutputHighWater bytes (a client that does not read
    // its responses stops being read: memory stays bounded) or while a
    // SlowJob is out with the offload hook. Stopped by the high-water mark,
    // it is owed another call once output() drains: want().write stays true
    // until then, even if output() empties (no read event will come for
    // requests already read).
    void process();

    // The peer half-closed (read returned 0). Echo: send what is left, then
    // close. HTTP: a partial request is dropped; answered ones are flushed.
    void on_eof();

    // The read failed or the peer reset: nothing more will be sent.
    void abort() noexcept;

    Want want() const noexcept;

    // True while answers to requests already read are held back by the
    // output high-water mark: once output() has been sent, process() again
    // (no read event will come for bytes that were already read).
    bool held_back() const noexcept { return paused_; }

    // True once the connection should be closed: nothing left to send and
    // either the peer is gone or the protocol said close (an error status,
    // Connection: close, HTTP/1.0 without keep-alive).
    bool done() const noexcept;

    // True while a request has begun but is not complete (header timeout
    // applies); false between requests (idle timeout applies).
    bool mid_request() const noexcept;

    // Requests answered so far (echo: reads echoed): progress a timer can see.
    std::uint64_t answered() const noexcept { return answered_; }

    // Step 09: when set, SlowJobs go to `offload` instead of running inline.
    // offload returns false when it cannot take the job (queue full): the
    // session answers 503 with Retry-After. While a job is out the session
    // answers nothing further (pipelined responses stay in order); the
    // owner calls complete() with run_slow_job's body when it is back.
    // complete() appends the 200 and calls process() itself, so the requests
    // queued behind the job are answered too; the owner then writes output()
    // and asks want() again. After abort() the owner drops the result
    // instead (done() is true: the connection is closing).
    void set_offload(std::function<bool(const SlowJob&)> offload);
    void complete(std::string_view body);
    // The job was not run (a stop's drain time was over before a worker
    // took it): answers 503, as a full queue does, and closes.
    void complete_refused();
    // True while a SlowJob is out with the offload hook.
    bool waiting_for_job() const noexcept { return job_out_; }

    // Steps with workers: each request is also counted in `worker` (that
    // worker's WorkerCounters::requests), beside the total.
    void count_requests_in(std::atomic<std::uint64_t>* worker) noexcept {
        worker_requests_ = worker;
    }

private:
    struct Reply;  // a response about to be formatted (session.cpp)
    void process_echo();
    void process_frame();
    void process_http();
    bool answer_next(Request& req);
    void answer(const Request& req, std::string_view body);
    void run_job(const SlowJob& job, Reply& reply);
    void send(const Reply& reply);
    void count_input() noexcept;
    void drop_input(std::size_t n) noexcept;

    Mode mode_;
    Stats& stats_;
    Buffer in_;
    Buffer out_;
    std::size_t counted_in_ = 0;  // input bytes already added to stats
    bool peer_closed_ = false;    // read side finished (EOF or error)
    bool closing_ = false;        // close once output() is flushed
    bool aborted_ = false;
    bool job_out_ = false;        // a SlowJob is with the offload hook
    bool paused_ = false;         // process() stopped at the high-water mark with input left
    bool job_keep_alive_ = true;
    bool job_http10_ = false;     // the job's request was HTTP/1.0 (say keep-alive)
    std::size_t head_seen_ = 0;   // input size when the head was last found partial
    std::size_t body_end_ = 0;    // input size that completes the body awaited
    std::function<bool(const SlowJob&)> offload_;
    std::atomic<std::uint64_t>* worker_requests_ = nullptr;
    std::uint64_t answered_ = 0;
};

}  // namespace ladder

// fuzz_session.cpp — libFuzzer target: common/session.h over a request stream,
// whole versus fragmented.
//
// The same stream goes to two Sessions: A gets every byte in one read and
// is processed after every write (the ideal owner), B gets it cut at
// fuzzer-chosen points and is driven like a step's event loop: it reads only
// while want().read says so, is called back only when want() asks, and
// writes in fuzzer-chosen short writes (a small socket buffer). The
// responses must be byte-for-byte the same: splitting never changes the
// answers, and no request is left unanswered for want of an event. Also checked:
// a session never stalls (not reading, nothing to write, no job out, not
// done), output stays bounded, and (when no HEAD makes framing ambiguous)
// the output is a sequence of well-formed responses, one per counted request,
// nothing after a Connection: close.
//
// /work and /cpu never sleep or spin here: a flag bit picks either the
// offload hook (step 09's path; jobs are completed at once with a fake body,
// some refused with 503 by a fuzzer-chosen mask) or the inline path, which
// only runs streams that cannot name /work or /cpu. /stats answers depend
// on when they are asked (bytes_in so far), so streams naming it are skipped.
//
// Input layout (FuzzedDataProvider takes integers from the end):
//   [stream bytes ...][cut offsets, 2 bytes each][cut count][write size][flags]
// Make every finding a case in tests/unit/test_session.cpp.
#include "protocol_limits.h"
#include "session.h"

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

using ladder::Mode;
using ladder::Session;
using ladder::SlowJob;
using ladder::Stats;

namespace {

[[noreturn]] void fail(const char* what, long a = 0, long b = 0) {
    std::fprintf(stderr, "fuzz_session: %s (%ld, %ld)\n", what, a, b);
    std::abort();
}

void check(bool ok, const char* what, long a = 0, long b = 0) {
    if (!ok) fail(what, a, b);
}

struct Setup {
    Mode mode = Mode::http;
    bool offload = false;
    std::uint8_t refuse_mask = 0;  // job k is refused (503) when bit k % 8 is set
    bool eof = false;              // the client half-closes after the stream
    std::size_t write_size = 0;    // B's writes take at most this much (0: all)
};

// One Session and the loop around it: what it answered, its stats, its jobs.
class Run {
public:
    explicit Run(const Setup& setup)
        : setup_(setup), stats_("00", ladder::to_string(setup.mode)),
          s_(setup.mode, stats_) {
        if (setup.offload)
            s_.set_offload([this](const SlowJob& job) {
                bool refuse = (setup_.refuse_mask >> (jobs_ % 8)) & 1;
                ++jobs_;
                if (refuse) return false;
                check(!pending_, "a second job while one is out");
                pending_ = job;
                return true;
            });
    }

    // A write: takes up to `n` bytes of output (0: all of it).
    void write(std::size_t n) {
        std::string_view out = s_.output().readable();
        if (n == 0 || n > out.size()) n = out.size();
        answered_.append(out.substr(0, n));
        s_.output().consume(n);
    }

    // Hands back a finished job, as step 09's loop does; no sleep, no hashing.
    bool finish_job() {
        if (!pending_) return false;
        SlowJob job = *pending_;
        pending_.reset();
        s_.complete((job.kind == SlowJob::work ? "worked " : "cpu ") +
                    std::to_string(job.arg) + "\n");
        return true;
    }

    // What the session must never be: waiting for nothing while not done.
    void check_not_stalled() {
        ladder::Want w = s_.want();
        check(s_.done() || w.read || w.write || pending_, "stalled: no read, no write");
        if (setup_.mode == Mode::http)
            check(s_.output().size() <= ladder::kOutputHighWater + ladder::kMaxBody + 4096,
                  "output past its bound", long(s_.output().size()));
    }

    // Writes and finishes jobs until the session has nothing more to do.
    void settle(std::size_t write_size) {
        for (int guard = 0; guard < 1'000'000; ++guard) {
            check_not_stalled();
            if (finish_job()) continue;
            if (s_.output().empty()) return;
            write(write_size);
            s_.process();  // an event loop's on_writable: process, then write
        }
        fail("settle does not end");
    }

    Session& session() { return s_; }
    const std::string& answered() const { return answered_; }
    const Stats& stats() const { return stats_; }

private:
    const Setup& setup_;
    Stats stats_;
    Session s_;
    std::optional<SlowJob> pending_;
    unsigned jobs_ = 0;
    std::string answered_;
};

// A: the whole stream in one read.
void run_whole(Run& a, std::string_view stream, const Setup& setup) {
    a.session().input().append(stream);
    a.session().process();
    a.settle(0);
    if (setup.eof) {
        a.session().on_eof();
        a.settle(0);
    }
}

// B: an event loop, events only for what want() asks. Readable: the next
// piece arrives, then process() and a short write. Writable: process(), then
// a short write (a step's answer()). A finished job: complete(), then a
// write. When it asks for nothing it can get, a real loop would sleep for
// ever: B stops there, and what A answered beyond it shows up as a stall.
void run_pieces(Run& b, std::string_view stream, const std::vector<std::size_t>& cuts,
                const Setup& setup) {
    Session& s = b.session();
    std::size_t at = 0, next_cut = 0;
    bool eof_sent = false;
    for (long guard = 0;; ++guard) {
        check(guard < 10'000'000, "the event loop does not end");
        if (s.done()) return;
        b.check_not_stalled();
        ladder::Want want = s.want();
        if (b.finish_job()) {
            b.write(setup.write_size);
        } else if (want.write) {
            s.process();
            b.write(setup.write_size);
        } else if (want.read && at < stream.size()) {
            while (next_cut < cuts.size() && cuts[next_cut] <= at) ++next_cut;
            std::size_t end = next_cut < cuts.size() ? cuts[next_cut] : stream.size();
            s.input().append(stream.substr(at, end - at));
            at = end;
            s.process();
            b.write(setup.write_size);
        } else if (want.read && setup.eof && !eof_sent) {
            eof_sent = true;
            s.on_eof();
            b.write(setup.write_size);
        } else {
            return;
        }
    }
}

int status_of(std::string_view head) {
    if (head.size() < 12 || !head.starts_with("HTTP/1.1 ")) fail("bad status line");
    int code = 0;
    for (char c : head.substr(9, 3)) {
        check(c >= '0' && c <= '9', "status is not 3 digits");
        code = code * 10 + (c - '0');
    }
    return code;
}

// The output as responses: each well-formed, framed by its Content-Length,
// nothing after one that says Connection: close. Returns how many.
std::size_t count_responses(std::string_view out) {
    std::size_t n = 0;
    while (!out.empty()) {
        std::size_t end = out.find("\r\n\r\n");
        check(end != out.npos, "a response head without its end");
        std::string_view head = out.substr(0, end + 2);
        switch (status_of(head)) {
        case 200: case 400: case 404: case 405: case 413: case 414: case 431:
        case 501: case 503: case 505: break;
        default: fail("unexpected status", status_of(head));
        }
        std::size_t at = head.find("\r\nContent-Length: ");
        check(at != head.npos, "no Content-Length");
        std::size_t length = std::strtoul(head.data() + at + 18, nullptr, 10);
        check(out.size() >= end + 4 + length, "body shorter than Content-Length");
        out.remove_prefix(end + 4 + length);
        ++n;
        if (head.find("\r\nConnection: close\r\n") != head.npos)
            check(out.empty(), "bytes after Connection: close");
    }
    return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    FuzzedDataProvider fdp(data, size);
    const auto flags = fdp.ConsumeIntegral<std::uint8_t>();
    Setup setup;
    setup.mode = (flags & 7) == 7 ? Mode::echo : (flags & 7) == 6 ? Mode::frame : Mode::http;
    setup.offload = flags & 8;
    setup.eof = flags & 16;
    setup.refuse_mask = static_cast<std::uint8_t>((flags >> 5) * 37);
    setup.write_size = fdp.ConsumeIntegral<std::uint8_t>() * std::size_t{61};
    std::vector<std::size_t> cuts(fdp.ConsumeIntegralInRange<std::size_t>(0, 64));
    for (std::size_t& cut : cuts) cut = fdp.ConsumeIntegral<std::uint16_t>();
    const std::string stream = fdp.ConsumeRemainingBytesAsString();

    if (stream.find("/stats") != stream.npos) return -1;  // its body depends on timing
    if (!setup.offload &&
        (stream.find("/work") != stream.npos || stream.find("/cpu") != stream.npos))
        return -1;  // inline jobs would sleep or spin
    for (std::size_t& cut : cuts) cut %= stream.size() + 1;
    std::sort(cuts.begin(), cuts.end());

    Run a(setup), b(setup);
    run_whole(a, stream, setup);
    run_pieces(b, stream, cuts, setup);

    check(a.answered() == b.answered(), "fragmentation changed the responses",
          long(a.answered().size()), long(b.answered().size()));
    if (setup.mode != Mode::echo)  // echo counts reads, and B reads more often
        check(a.stats().counters().requests == b.stats().counters().requests, "requests");
    check(a.stats().counters().bytes_out == b.stats().counters().bytes_out, "bytes_out");
    check(a.stats().counters().bytes_out == a.answered().size(), "bytes_out is not the output");
    check(a.session().done() == b.session().done(), "done() differs");
    check(a.session().mid_request() == b.session().mid_request(), "mid_request() differs");
    check(a.session().output().empty(), "output left unwritten");

    if (setup.mode == Mode::echo) {
        check(a.answered() == stream, "echo changed the bytes");
    } else if (setup.mode == Mode::frame) {
        // Whole frames go back as they came: the answer is a prefix of the
        // stream that ends on a frame boundary.
        check(stream.compare(0, a.answered().size(), a.answered()) == 0,
              "frames changed or reordered");
        std::size_t at = 0;
        while (at + 4 <= a.answered().size()) {
            auto byte = [&](std::size_t i) { return std::size_t(std::uint8_t(a.answered()[at + i])); };
            at += 4 + (byte(0) << 24 | byte(1) << 16 | byte(2) << 8 | byte(3));
        }
        check(at == a.answered().size(), "an answer ends mid-frame");
    } else if (stream.find("HEAD") == stream.npos) {  // HEAD answers carry no body
        check(count_responses(a.answered()) == a.stats().counters().requests,
              "responses and counted requests differ");
    }
    if (setup.mode == Mode::http && a.session().done()) {  // nothing after the end
        a.session().input().append("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        a.session().process();
        check(a.session().output().empty(), "answered after done()");
    }
    return 0;
}

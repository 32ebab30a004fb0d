// Step 01 — blocking, one client at a time.
// Adds:    socket, bind, listen; accept one client and serve it until it leaves.
// Why:     the simplest server there is: every call blocks, the code reads top to bottom.
// Costs:   while one client is connected, every other client waits in the accept queue.
// Observe: make step-01; make test-steps PYTEST_ARGS='-k "01 and waits"'

#include "error.h"
#include "net.h"
#include "options.h"
#include "session.h"
#include "signals.h"
#include "stats.h"

#include <cstdio>

namespace {

constexpr ladder::StepInfo kStep{
    .program = "step-01",
    .summary = "Step 01 — blocking: accept one client, serve it until it leaves.",
};

// [snip:serve]
// Reads, answers, writes — until the client leaves. Nobody else is served
// meanwhile: the only thread is asleep in read() or write() for this client.
void serve(ladder::FdRef conn, ladder::Mode mode, ladder::Stats& stats) {
    ladder::Session session(mode, stats);
    // A stop request shuts down our read side, so a read() asleep here
    // returns 0 and the loop ends after flushing what was answered.
    int slot = ladder::wake_on_stop(conn.get());
    while (!session.done()) {
        ladder::IoResult r = ladder::read_some(conn, session.input());
        if (r.kind == ladder::IoResult::ok)
            session.process();
        else if (r.kind == ladder::IoResult::eof)
            session.on_eof();
        else
            session.abort();
        // The session holds answers back while its output is above its
        // high-water mark: once the output is written, answer those too.
        while (!session.output().empty()) {
            if (ladder::write_all(conn, session.output()).kind != ladder::IoResult::ok)
                session.abort();
            session.process();
        }
    }
    ladder::forget_on_stop(slot);
    ladder::bump(stats.counters().closed);
}
// [/snip]

// [snip:accept-loop]
void run(ladder::FdRef listener, ladder::Mode mode, ladder::Stats& stats) {
    while (!ladder::stop_requested()) {
        // Sleeps until a client completes the TCP handshake. The kernel
        // finishes handshakes by itself and queues them (the listen backlog);
        // accept() only takes the oldest one off the queue.
        std::optional<ladder::Fd> conn = ladder::try_accept(listener);
        ladder::bump(stats.counters().wakeups);
        if (!conn) continue;
        ladder::bump(stats.counters().accepted);
        serve(*conn, mode, stats);
    }
}
// [/snip]

}  // namespace

int main(int argc, char** argv) try {
    ladder::Options options = ladder::parse_options(argc, argv, kStep);
    ladder::install_stop_handlers();
    ladder::Fd listener = ladder::listen_tcp({.host = options.host, .port = options.port});
    ladder::wake_on_stop(listener.get());  // a stop makes the sleeping accept() return
    ladder::Stats stats("01", ladder::to_string(options.mode));
    ladder::announce_listening(listener);
    run(listener, options.mode, stats);
    std::printf("%s\n", stats.json().c_str());
    return 0;
} catch (const std::exception& e) {
    return ladder::report_fatal(kStep.program, e);
}

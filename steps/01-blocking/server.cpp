// Step 01 — blocking, one client at a time.
// Adds:    socket, setsockopt, bind, listen; accept4 a client, then read and send until it leaves.
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
#include <sys/socket.h>
#include <unistd.h>

namespace {

constexpr ladder::StepInfo kStep{
    .summary = "Step 01 — blocking: accept one client, serve it until it leaves.",
};

// [snip:listen]
// socket, bind, listen: a socket the kernel queues connections on.
ladder::Fd open_listener(const ladder::Options& options) {
    ladder::Address addr = ladder::parse_address(options.host, options.port);
    ladder::Fd fd(::socket(addr.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) ladder::throw_sys("socket", errno, ladder::hint_for(errno));
    // A restarted server may bind while its old connections sit in TIME_WAIT.
    int on = 1;
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0)
        ladder::throw_sys("setsockopt(SO_REUSEADDR)");
    if (::bind(fd.get(), addr.get(), addr.length) != 0)
        ladder::throw_sys("bind(" + addr.text + ")", errno, ladder::hint_for(errno));
    // From here the kernel completes handshakes by itself and queues them,
    // up to the backlog, whether or not anyone calls accept().
    if (::listen(fd.get(), ladder::kBacklog) != 0)
        ladder::throw_sys("listen(" + addr.text + ")");
    return fd;
}
// [/snip]

// [exercise:serve]
// [snip:serve]
// Sends every answer the session holds. A blocking send() returns once the
// kernel has taken some of the bytes, not necessarily all: loop.
void send_all(ladder::FdRef conn, ladder::Session& session) {
    while (!session.output().empty()) {
        std::string_view out = session.output().readable();
        // MSG_NOSIGNAL: a client that has gone makes send() fail with EPIPE
        // instead of raising SIGPIPE, whose default action kills the server.
        ssize_t n = ::send(conn.get(), out.data(), out.size(), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            session.abort();  // EPIPE, ECONNRESET: the client has gone
            return;
        }
        session.output().consume(std::size_t(n));
        session.process();  // answers held back by the high-water mark, if any
    }
}

// Reads, answers, sends — until the client leaves. Nobody else is served
// meanwhile: the only thread sleeps in read() or send() for this client.
void serve(ladder::FdRef conn, ladder::Session& session) {
    while (!session.done()) {
        char* room = session.input().writable(ladder::kReadSize).data();
        ssize_t n = ::read(conn.get(), room, ladder::kReadSize);
        if (n > 0) {
            session.input().commit(std::size_t(n));
            session.process();
        } else if (n == 0) {
            session.on_eof();  // the client's FIN: answer what is complete, then close
        } else if (errno != EINTR) {
            session.abort();  // ECONNRESET: it left without a goodbye
        }
        send_all(conn, session);
    }
}
// [/snip]
// [/exercise]

// [exercise:accept-loop]
// [snip:accept-loop]
void run(ladder::FdRef listener, ladder::Mode mode, ladder::Stats& stats) {
    while (!ladder::stop_requested()) {
        // Sleeps until a client is in the queue, and takes the oldest.
        int fd = ::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC);
        ladder::bump(stats.counters().wakeups);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                ladder::refuse_one_client(listener, errno, stats.counters());
            else if (errno != EINTR && errno != EINVAL && !ladder::client_gone_before_accept(errno))
                ladder::throw_sys("accept4");
            continue;  // EINVAL: a stop shut the listener down (main)
        }
        ladder::Fd conn(fd);
        ladder::bump(stats.counters().accepted);
        ladder::Session session(mode, stats);
        // A stop shuts our read side down: a read() asleep here returns 0.
        int slot = ladder::wake_on_stop(fd);
        serve(conn, session);
        ladder::forget_on_stop(slot);
        ladder::bump(stats.counters().closed);
    }
}
// [/snip]
// [/exercise]

}  // namespace

int main(int argc, char** argv) try {
    ladder::Options options = ladder::parse_options(argc, argv, kStep);
    ladder::install_stop_handlers();
    // accept() and read() wait for their socket alone: one more thread waits
    // for SIGINT/SIGTERM, and wakes them by shutting their sockets down.
    ladder::watch_stop_in_a_thread();
    ladder::Fd listener = open_listener(options);
    // A stop shuts the listener down, and the accept() asleep on it fails with EINVAL.
    ladder::wake_on_stop(listener.get());
    ladder::Stats stats(kStep.number, ladder::to_string(options.mode));
    ladder::announce_listening(listener);
    run(listener, options.mode, stats);
    std::printf("%s\n", stats.json().c_str());
    return 0;
} catch (const std::exception& e) {
    return ladder::report_fatal(kStep.program, e);
}

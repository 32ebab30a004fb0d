// blocking.cpp — step 07: pre-forked processes asleep in accept4() (Apache's prefork).
//
// Every worker process sleeps in a blocking accept4() on the same socket.
// accept() waits as an exclusive waiter (since Linux 2.6), so a connection
// wakes one of them; a worker that comes back queues behind the others:
// they take turns. Each serves its client to the end with step 01's
// serve(), so N processes serve N clients at a time.

#include "error.h"
#include "herd.h"
#include "net.h"
#include "session.h"
#include "signals.h"

#include <chrono>
#include <csignal>
#include <cstdio>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace herd {

namespace {

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

void blocking_worker(Herd& herd, int id) {
    ladder::WorkerCounters& w = herd.stats.worker(id);
    while (!ladder::stop_requested()) {
        long before = sleeps();
        int fd = ::accept4(herd.listener.get(), nullptr, nullptr, SOCK_CLOEXEC);
        count_silent_wakeups(w, before);
        ladder::bump(herd.stats.counters().wakeups);
        ladder::bump(w.wakeups);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                ladder::refuse_one_client(herd.listener, errno, herd.stats.counters());
            else if (errno == EINVAL)
                return;  // the parent shut the listener down: a stop
            else if (errno != EINTR && !ladder::client_gone_before_accept(errno))
                ladder::throw_sys("accept4");
            continue;
        }
        ladder::Fd conn(fd);
        ladder::bump(herd.stats.counters().accepted);
        ladder::bump(w.accepted);
        ladder::bump(w.connections);
        ladder::Session session(herd.options.mode, herd.stats);
        session.count_requests_in(&w.requests);
        int slot = ladder::wake_on_stop(fd);  // a stop: the read() below returns 0
        serve(conn, session);
        ladder::forget_on_stop(slot);
        ladder::bump(herd.stats.counters().closed);
    }
}

// SIGTERM wakes a child asleep in read() on a client (its handler shuts the
// socket down); a child still busy at the stop's give-up time is killed.
void stop_children(std::vector<pid_t>& children) {
    for (pid_t pid : children)
        if (::kill(pid, SIGTERM) != 0) ladder::throw_sys("kill(SIGTERM)");
    while (!children.empty() && std::chrono::steady_clock::now() < ladder::give_up_at()) {
        pid_t pid = ::waitpid(-1, nullptr, WNOHANG);
        if (pid > 0)
            std::erase(children, pid);
        else if (pid == 0)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        else if (errno != EINTR)
            ladder::throw_sys("waitpid");
    }
    for (pid_t pid : children) {
        // Unreaped, so the pid is still this child's: it cannot be reused yet.
        if (::kill(pid, SIGKILL) != 0) ladder::throw_sys("kill(SIGKILL)");
        if (ladder::retry_eintr([&] { return ::waitpid(pid, nullptr, 0); }) < 0)
            ladder::throw_sys("waitpid");
    }
}

}  // namespace

// The parent forks the workers, then only waits. The counters live in a
// MAP_SHARED mapping, so its stats line adds up what the children counted.
void run_blocking(Herd& herd, int workers) {
    herd.stats.share_across_fork();
    // A stop shuts the listener down: every child asleep in accept4() returns.
    ladder::wake_on_stop(herd.listener.get());
    std::vector<pid_t> children;
    for (int id = 0; id < workers; ++id) {
        pid_t pid = ::fork();
        if (pid < 0) {
            int err = errno;
            ladder::request_stop();
            stop_children(children);
            ladder::throw_sys("fork", err);
        }
        if (pid == 0) {
            // Only the forking thread lives on in a child: the parent's
            // SIGTERM is caught by a handler, which shuts the client's socket.
            ladder::handle_stop_signals_in_child();
            int status = 0;
            try {
                blocking_worker(herd, id);
            } catch (const std::exception& e) {
                status = ladder::report_fatal("step-07 worker", e);
            }
            std::fflush(stderr);
            ::_exit(status);  // not exit(): the parent's atexit handlers are not ours
        }
        children.push_back(pid);
    }
    ladder::announce_listening(herd.listener);
    // The parent only waits for the stop: SIGINT or SIGTERM pending on its
    // signalfd (or a child that failed: waitpid below would show it).
    pollfd stop{.fd = ladder::stop_fd(), .events = POLLIN, .revents = 0};
    while (::poll(&stop, 1, -1) < 0)
        if (errno != EINTR) ladder::throw_sys("poll(signalfd)");
    ladder::request_stop();  // shuts the listener down: every child in accept4() returns
    stop_children(children);
}

}  // namespace herd

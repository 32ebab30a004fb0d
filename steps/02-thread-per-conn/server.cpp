// Step 02 — a thread per connection (or a process, with --processes).
// Adds:    std::thread (or fork and waitpid) per accepted client; the accept loop never waits on one.
// Why:     blocking code stays simple, and the kernel's scheduler interleaves the clients.
// Costs:   a stack, a kernel task and context switches per connection, idle or not.
// Observe: make step-02; make test-steps PYTEST_ARGS='-k "02 and threads"'

#include "error.h"
#include "net.h"
#include "options.h"
#include "session.h"
#include "signals.h"
#include "stats.h"

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <mutex>
#include <set>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

constexpr ladder::StepInfo kStep{
    .summary = "Step 02 — a thread per connection (--processes: a process per connection).",
};

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

// Reads, answers, sends — until the client leaves. Blocking calls are fine:
// only this connection's thread sleeps in them.
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

// The open connections, so that a stop can wake the threads asleep in read().
class Live {
public:
    void add(int fd) {
        std::lock_guard lock(mutex_);
        fds_.insert(fd);
    }
    void remove(int fd) {
        std::lock_guard lock(mutex_);
        fds_.erase(fd);
        if (fds_.empty()) empty_.notify_all();
    }
    // shutdown(SHUT_RD): a read() asleep on the socket returns 0, so each
    // thread sends what it has answered and leaves. False when some are
    // still busy (a long /work) at the stop's give-up time.
    bool stop_all_and_wait() {
        std::unique_lock lock(mutex_);
        for (int fd : fds_)
            if (::shutdown(fd, SHUT_RD) != 0 && errno != ENOTCONN)  // ENOTCONN: reset already
                std::perror("step-02: shutdown");
        return empty_.wait_until(lock, ladder::give_up_at(), [&] { return fds_.empty(); });
    }

private:
    std::mutex mutex_;
    std::condition_variable empty_;
    std::set<int> fds_;
};

// [exercise:thread]
// [snip:thread-per-conn]
// One thread per connection, detached: it owns its socket and ends with it.
void start_thread(ladder::Fd conn, ladder::Mode mode, ladder::Stats& stats, Live& live) {
    int fd = conn.get();
    live.add(fd);
    try {
        std::thread([conn = std::move(conn), mode, &stats, &live] {
            ladder::Session session(mode, stats);
            serve(conn, session);
            ladder::bump(stats.counters().closed);
            live.remove(conn.get());  // before the socket closes and its number is reused
        }).detach();
    } catch (const std::system_error& e) {
        // pthread_create failed (EAGAIN: thread or memory limit). The lambda
        // and the socket it held are gone: this client is refused.
        std::fprintf(stderr, "step-02: cannot start a thread: %s\n", e.what());
        live.remove(fd);
        ladder::bump(stats.counters().refused);
        ladder::bump(stats.counters().closed);
    }
}
// [/snip]
// [/exercise]

// [exercise:fork]
// [snip:process-per-conn]
// --processes: fork() copies the whole process; the child serves the client
// and exits, the parent closes its copy of the socket and accepts again.
void start_process(ladder::Fd conn, ladder::Mode mode, ladder::Stats& stats,
                   int listener_slot, std::set<pid_t>& children) {
    pid_t pid = ::fork();
    if (pid < 0) {
        std::fprintf(stderr, "step-02: fork: %s\n", ladder::errno_text(errno).c_str());
        ladder::bump(stats.counters().refused);
        ladder::bump(stats.counters().closed);
        return;
    }
    if (pid == 0) {
        // Only the forking thread lives on in the child: no thread waits for
        // a stop here. The parent's SIGTERM is caught by a handler instead.
        ladder::handle_stop_signals_in_child();
        ladder::forget_on_stop(listener_slot);  // a stop wakes the client's read() instead
        ladder::wake_on_stop(conn.get());
        ladder::Session session(mode, stats);
        serve(conn, session);
        ladder::bump(stats.counters().closed);
        std::fflush(stderr);
        ::_exit(0);  // not exit(): the parent's atexit handlers and destructors are not ours
    }
    children.insert(pid);
}

// Collects the children that have exited, so they do not linger as zombies.
// `block`: wait for each of them.
void reap(std::set<pid_t>& children, bool block) {
    while (!children.empty()) {
        pid_t pid = ::waitpid(-1, nullptr, block ? 0 : WNOHANG);
        if (pid < 0 && errno == EINTR) continue;
        if (pid < 0 && errno != ECHILD) ladder::throw_sys("waitpid");
        if (pid <= 0) return;
        children.erase(pid);
    }
}
// [/snip]
// [/exercise]

// SIGTERM to each child: its handler shuts its client's socket down, and it
// sends what it has answered and exits. A child still busy at the stop's
// give-up time is killed.
void stop_processes(std::set<pid_t>& children) {
    for (pid_t pid : children)
        if (::kill(pid, SIGTERM) != 0) ladder::throw_sys("kill(SIGTERM)");
    while (!children.empty() && std::chrono::steady_clock::now() < ladder::give_up_at()) {
        reap(children, false);
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    // Not reaped yet, so each pid is still that child's: it cannot be reused.
    for (pid_t pid : children)
        if (::kill(pid, SIGKILL) != 0) ladder::throw_sys("kill(SIGKILL)");
    reap(children, true);
}

}  // namespace

int main(int argc, char** argv) try {
    bool processes = false;
    std::vector<ladder::Flag> flags{
        {.name = "processes", .help = "fork a process per connection", .target = &processes}};
    ladder::Options options = ladder::parse_options(argc, argv, kStep, flags);
    ladder::install_stop_handlers();
    // accept() and read() wait for their socket alone: one more thread waits
    // for SIGINT/SIGTERM, and wakes them by shutting their sockets down.
    ladder::watch_stop_in_a_thread();
    ladder::Fd listener = ladder::listen_tcp(options.host, options.port, false);
    int listener_slot = ladder::wake_on_stop(listener.get());
    ladder::Stats stats(kStep.number, ladder::to_string(options.mode));
    if (processes) stats.share_across_fork();
    Live live;
    std::set<pid_t> children;
    ladder::announce_listening(listener);
    // [snip:accept-loop]
    while (!ladder::stop_requested()) {
        int fd = ::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC);
        ladder::bump(stats.counters().wakeups);
        if (processes) reap(children, false);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                ladder::refuse_one_client(listener, errno, stats.counters());
            else if (errno != EINTR && errno != EINVAL && !ladder::client_gone_before_accept(errno))
                ladder::throw_sys("accept4");
            continue;  // EINVAL: a stop shut the listener down
        }
        ladder::bump(stats.counters().accepted);
        if (processes)
            start_process(ladder::Fd(fd), options.mode, stats, listener_slot, children);
        else
            start_thread(ladder::Fd(fd), options.mode, stats, live);
    }
    // [/snip]
    bool drained = processes ? (stop_processes(children), true) : live.stop_all_and_wait();
    std::printf("%s\n", stats.json().c_str());
    std::fflush(stdout);
    // Threads still busy at the give-up time (a long /work) cannot be
    // interrupted; end the process without running destructors under them.
    if (!drained) std::_Exit(0);
    return 0;
} catch (const std::exception& e) {
    return ladder::report_fatal(kStep.program, e);
}

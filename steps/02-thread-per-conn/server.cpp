// Step 02 — a thread per connection (or a process, with --processes).
// Adds:    std::thread (or fork) per accepted client; the accept loop never waits on one.
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
    .program = "step-02",
    .summary = "Step 02 — a thread per connection (--processes: a process per connection).",
};
constexpr auto kDrainTime = std::chrono::seconds(2);

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
    // thread flushes what it has answered and leaves.
    bool stop_all_and_wait() {
        std::unique_lock lock(mutex_);
        for (int fd : fds_) ::shutdown(fd, SHUT_RD);
        return empty_.wait_for(lock, kDrainTime, [&] { return fds_.empty(); });
    }

private:
    std::mutex mutex_;
    std::condition_variable empty_;
    std::set<int> fds_;
};

// [snip:serve]
// Reads, answers, writes — until the client leaves. Blocking calls are fine:
// only this connection's thread sleeps in them.
void serve(ladder::FdRef conn, ladder::Mode mode, ladder::Stats& stats) {
    ladder::Session session(mode, stats);
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
    ladder::bump(stats.counters().closed);
}
// [/snip]

// [snip:thread-per-conn]
// One thread per connection, detached: it owns its socket and ends with it.
void start_thread(ladder::Fd conn, ladder::Mode mode, ladder::Stats& stats, Live& live) {
    int fd = conn.get();
    live.add(fd);
    try {
        std::thread([conn = std::move(conn), mode, &stats, &live] {
            serve(conn, mode, stats);
            live.remove(conn.get());  // before the socket closes and its number is reused
        }).detach();
    } catch (const std::system_error& e) {
        // pthread_create failed (EAGAIN: thread or memory limit). The lambda
        // and the socket it holds are gone; this client is refused.
        std::fprintf(stderr, "step-02: cannot start a thread: %s\n", e.what());
        live.remove(fd);
        ladder::bump(stats.counters().refused);
        ladder::bump(stats.counters().closed);
    }
}
// [/snip]

// --processes: fork() copies the whole process; the child serves the client
// and exits, the parent closes its copy of the socket and goes back to accept.
void start_process(ladder::Fd conn, ladder::Mode mode, ladder::Stats& stats,
                   ladder::FdRef listener, std::set<pid_t>& children) {
    pid_t pid = ::fork();
    if (pid < 0) {
        std::fprintf(stderr, "step-02: fork: %s\n", ladder::errno_text(errno).c_str());
        ladder::bump(stats.counters().refused);
        ladder::bump(stats.counters().closed);
        return;
    }
    if (pid == 0) {
        ::close(listener.get());
        ladder::wake_on_stop(conn.get());
        serve(conn, mode, stats);
        std::fflush(stderr);
        ::_exit(0);  // skip the parent's atexit handlers and destructors
    }
    children.insert(pid);
}

// Collects children that have exited, so they do not linger as zombies.
void reap(std::set<pid_t>& children, bool wait) {
    while (!children.empty()) {
        pid_t pid = ::waitpid(-1, nullptr, wait ? 0 : WNOHANG);
        if (pid <= 0) return;
        children.erase(pid);
    }
}

void stop_processes(std::set<pid_t>& children) {
    for (pid_t pid : children) ::kill(pid, SIGTERM);  // each child finishes and exits
    auto deadline = std::chrono::steady_clock::now() + kDrainTime;
    while (!children.empty() && std::chrono::steady_clock::now() < deadline) {
        reap(children, false);
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    for (pid_t pid : children) ::kill(pid, SIGKILL);
    reap(children, true);
}

}  // namespace

int main(int argc, char** argv) try {
    bool processes = false;
    std::vector<ladder::Flag> flags{
        {.name = "processes", .help = "fork a process per connection", .target = &processes}};
    ladder::Options options = ladder::parse_options(argc, argv, kStep, flags);
    ladder::install_stop_handlers();
    ladder::Fd listener = ladder::listen_tcp({.host = options.host, .port = options.port});
    ladder::wake_on_stop(listener.get());
    ladder::Stats stats("02", ladder::to_string(options.mode));
    if (processes) stats.share_across_fork();
    Live live;
    std::set<pid_t> children;
    ladder::announce_listening(listener);
    // [snip:accept-loop]
    while (!ladder::stop_requested()) {
        std::optional<ladder::Fd> conn = ladder::try_accept(listener);
        ladder::bump(stats.counters().wakeups);
        if (processes) reap(children, false);
        if (!conn) continue;
        ladder::bump(stats.counters().accepted);
        if (processes)
            start_process(std::move(*conn), options.mode, stats, listener, children);
        else
            start_thread(std::move(*conn), options.mode, stats, live);
    }
    // [/snip]
    bool drained = processes ? (stop_processes(children), true) : live.stop_all_and_wait();
    std::printf("%s\n", stats.json().c_str());
    std::fflush(stdout);
    // Threads still busy after the drain time (a long /work) cannot be
    // interrupted; end the process without running destructors under them.
    if (!drained) std::_Exit(0);
    return 0;
} catch (const std::exception& e) {
    return ladder::report_fatal(kStep.program, e);
}

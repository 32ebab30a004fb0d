// test_signals.cpp — stop_fd, request_stop, the watcher thread, the child's
// handler, wake_on_stop, the stop's timeline.
//
// The stop state is process-global and sticky, so the cases run in file order
// (doctest's default) and each relies on the ones before it: first the state
// before install_stop_handlers(), then install, then a stop signal that is
// only seen (and, in a child, noticed), then the first stop and what holds
// after it, the two ways a process without an event loop takes the stop
// (each in a child process), and last the timeline and
// forget_stop_for_testing(). Every case leaves no stop signal pending.
//
// Once case 3 has run, SIGINT and SIGTERM are blocked in this process for
// good: a signal sent to it stays pending until a read of stop_fd() takes it,
// and doctest's own handlers for them never run. A forked child starts with
// no signal pending (fork clears the set) but with the mask.
//
// No case waits for kDrainTime: test_session.cpp waits once, and checks
// drain_over() and what a session answers then.
#include "signals.h"

#include "fd.h"
#include "net.h"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <fcntl.h>
#include <fstream>
#include <functional>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <string>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

using ladder::Fd;
using std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

// Generous: only a broken implementation waits this long.
constexpr int kPatienceMs = 10000;

bool readable_within(int fd, int ms) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

bool readable_now(int fd) { return readable_within(fd, 0); }

// Polls `done` every millisecond for up to `ms`.
bool true_within(int ms, const std::function<bool()>& done) {
    const auto deadline = steady_clock::now() + std::chrono::milliseconds(ms);
    while (!done()) {
        if (steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(1ms);
    }
    return true;
}

struct Pair {
    Fd a, b;
};
// Returns invalid Fds on failure (usable in a child, where REQUIRE is not).
Pair try_socket_pair(bool nonblocking) {
    int sv[2];
    int type = SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0);
    if (::socketpair(AF_UNIX, type, 0, sv) != 0) return {};
    return {Fd(sv[0]), Fd(sv[1])};
}
Pair socket_pair(bool nonblocking) {
    Pair p = try_socket_pair(nonblocking);
    REQUIRE(p.a.valid());
    return p;
}

// A client of 127.0.0.1:port; invalid if it could not connect.
Fd connect_loopback(std::uint16_t port) {
    Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd && ::connect(fd.get(), reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) fd.reset();
    return fd;
}

bool listening(const Fd& listener) {
    int on = 1;
    socklen_t len = sizeof on;
    REQUIRE(::getsockopt(listener.get(), SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0);
    return on != 0;
}

bool blocked_in_this_thread(int sig) {
    sigset_t mask;
    REQUIRE(::pthread_sigmask(SIG_BLOCK, nullptr, &mask) == 0);
    return sigismember(&mask, sig) == 1;
}

// The handler's address as a number: doctest cannot print function pointers.
std::uintptr_t handler_of(int sig) {
    struct sigaction sa {};
    REQUIRE(::sigaction(sig, nullptr, &sa) == 0);
    return reinterpret_cast<std::uintptr_t>(sa.sa_handler);
}
const std::uintptr_t kIgnored = reinterpret_cast<std::uintptr_t>(SIG_IGN);

// One stop signal taken through stop_fd(), as a loop that reads it would;
// ssi_signo is 0 if none was pending (polled first: should stop_fd be
// blocking, the case fails instead of sleeping).
signalfd_siginfo take_stop_signal() {
    signalfd_siginfo info{};
    if (!readable_now(ladder::stop_fd()) ||
        ::read(ladder::stop_fd(), &info, sizeof info) != sizeof info)
        info.ssi_signo = 0;
    return info;
}

// Takes every pending stop signal; how many there were.
int drain_stop_signals() {
    int n = 0;
    while (n < 8 && take_stop_signal().ssi_signo != 0) ++n;
    return n;
}

// When the first stop was requested, read back from give_up_at().
steady_clock::time_point stopped_at() { return ladder::give_up_at() - ladder::kGiveUpTime; }

// No stop yet: nowhere on the timeline, and no deadline.
void check_no_stop_time() {
    CHECK_FALSE(ladder::drain_over());
    CHECK_FALSE(ladder::drain_given_up());
    CHECK(ladder::give_up_at() == steady_clock::time_point::max());
}

// A stop requested between `before` and `after` (steady_clock readings).
void check_stop_time(steady_clock::time_point before, steady_clock::time_point after) {
    CHECK(stopped_at() >= before);
    CHECK(stopped_at() <= after);
    // Read before the clock: still in the drain time, unless this thread
    // was descheduled for kDrainTime since the stop.
    bool over = ladder::drain_over();
    bool given_up = ladder::drain_given_up();
    if (steady_clock::now() < stopped_at() + ladder::kDrainTime) {
        CHECK_FALSE(over);
        CHECK_FALSE(given_up);
    }
}

std::string describe(int status) {
    if (WIFEXITED(status)) return "exited " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
    return "status " + std::to_string(status);
}

// A child made by fork() that runs `body` and _exits: 0 if body returned "",
// else 1 with what went wrong sent back (doctest's checks belong to the
// parent). body gets a descriptor to write one byte to once it is set up.
// The child never outlives the case: unreaped, the destructor kills it.
// Fork only while this process has one thread: a child has only the thread
// that forked, and ThreadSanitizer refuses threads in the child otherwise.
class Child {
public:
    explicit Child(const std::function<std::string(int ready_fd)>& body) {
        int ready[2], report[2];
        REQUIRE(::pipe2(ready, O_CLOEXEC) == 0);
        Fd ready_read(ready[0]), ready_write(ready[1]);
        REQUIRE(::pipe2(report, O_CLOEXEC) == 0);
        Fd report_read(report[0]), report_write(report[1]);
        pid_ = ::fork();
        REQUIRE(pid_ >= 0);
        if (pid_ == 0) {
            std::string what;
            try {
                what = body(ready_write.get());
            } catch (const std::exception& e) {
                what = std::string("threw: ") + e.what();
            }
            (void)!::write(report_write.get(), what.data(), what.size());
            ::_exit(what.empty() ? 0 : 1);
        }
        // The write ends close here: EOF once the child is gone.
        ready_ = std::move(ready_read);
        report_ = std::move(report_read);
    }
    ~Child() {
        if (pid_ > 0 && !reaped_) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
    }
    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;

    pid_t pid() const { return pid_; }

    // The child wrote its byte to ready_fd within `ms`.
    bool ready_within(int ms) {
        char c;
        return readable_within(ready_.get(), ms) && ::read(ready_.get(), &c, 1) == 1;
    }

    // "exited 0" and the like; "still running" (then killed) after `ms`.
    std::string exit_within(int ms) {
        int status = 0;
        bool gone = true_within(ms, [&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; });
        if (!gone) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
        reaped_ = true;
        return gone ? describe(status) : "still running";
    }

    // What the child sent back: "" if all went well. After exit_within().
    std::string report() {
        std::string what;
        char buf[512];
        for (ssize_t n; (n = ::read(report_.get(), buf, sizeof buf)) > 0;) what.append(buf, n);
        return what;
    }

private:
    pid_t pid_ = -1;
    bool reaped_ = false;
    Fd ready_, report_;
};

bool say_ready(int ready_fd) { return ::write(ready_fd, "r", 1) == 1; }

}  // namespace

TEST_CASE("1. before install: no stop, no stop_fd, no stop time") {
    CHECK_FALSE(ladder::stop_requested());
    CHECK(ladder::stop_fd() == -1);
    check_no_stop_time();
    // The timeline: requests are served for kDrainTime, the rest closed at kGiveUpTime.
    CHECK(ladder::kDrainTime == std::chrono::seconds(2));
    CHECK(ladder::kGiveUpTime == std::chrono::seconds(3));

    // Before install, request_stop() sends no signal (test_session.cpp
    // relies on it): one would kill a child whose SIGTERM is the default.
    Child child([](int) -> std::string {
        if (::signal(SIGTERM, SIG_DFL) == SIG_ERR) return "signal(SIGTERM, SIG_DFL) failed";
        ladder::request_stop();
        if (!ladder::stop_requested()) return "request_stop() did not set the flag";
        return "";
    });
    CHECK(child.exit_within(kPatienceMs) == "exited 0");
    CHECK(child.report() == "");
}

TEST_CASE("2. block_stop_signals_in_this_thread: for a thread started before install") {
    REQUIRE_FALSE(blocked_in_this_thread(SIGTERM));
    bool int_blocked = false, term_blocked = false;
    std::thread t([&] {
        ladder::block_stop_signals_in_this_thread();
        int_blocked = blocked_in_this_thread(SIGINT);
        term_blocked = blocked_in_this_thread(SIGTERM);
    });
    t.join();
    CHECK(int_blocked);
    CHECK(term_blocked);
    CHECK_FALSE(blocked_in_this_thread(SIGINT));  // that thread's mask only
    CHECK_FALSE(blocked_in_this_thread(SIGTERM));
}

TEST_CASE("3. install_stop_handlers: signals blocked, SIGPIPE ignored, stop_fd a signalfd") {
    ladder::install_stop_handlers();
    // REQUIRE: unblocked, the SIGTERMs below would reach doctest's handler.
    REQUIRE(blocked_in_this_thread(SIGINT));
    REQUIRE(blocked_in_this_thread(SIGTERM));
    CHECK_FALSE(blocked_in_this_thread(SIGPIPE));
    REQUIRE(handler_of(SIGPIPE) == kIgnored);  // else the EPIPE check below kills the process

    // A thread started now inherits the mask: a stop signal cannot be
    // delivered to it, and stays pending for stop_fd().
    bool inherited = false;
    std::thread t([&] { inherited = blocked_in_this_thread(SIGTERM); });
    t.join();
    CHECK(inherited);

    int fd = ladder::stop_fd();
    REQUIRE(fd >= 0);
    char link[64] = {};
    const std::string path = "/proc/self/fd/" + std::to_string(fd);
    REQUIRE(::readlink(path.c_str(), link, sizeof link - 1) > 0);
    CHECK(std::string(link) == "anon_inode:[signalfd]");
    // fdinfo shows the signals it reads: bit N-1 for signal N.
    std::ifstream info("/proc/self/fdinfo/" + std::to_string(fd));
    std::string line, sigmask;
    while (std::getline(info, line))
        if (line.starts_with("sigmask:")) sigmask = line.substr(8);
    REQUIRE_FALSE(sigmask.empty());
    CHECK(std::strtoull(sigmask.c_str(), nullptr, 16) ==
          ((1ULL << (SIGINT - 1)) | (1ULL << (SIGTERM - 1))));
    CHECK((::fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
    REQUIRE((::fcntl(fd, F_GETFL) & O_NONBLOCK) != 0);  // else the reads below could sleep
    CHECK_FALSE(readable_now(fd));
    signalfd_siginfo none{};
    CHECK(::read(fd, &none, sizeof none) == -1);
    CHECK(errno == EAGAIN);  // nothing pending: a state, not an error
    CHECK_FALSE(ladder::stop_requested());

    // SIGPIPE ignored: a write to a closed peer fails with EPIPE instead of
    // killing the process.
    Pair p = socket_pair(false);
    p.b.reset();
    CHECK(::write(p.a.get(), "x", 1) == -1);
    CHECK(errno == EPIPE);

    ladder::install_stop_handlers();  // twice: the same signalfd
    CHECK(ladder::stop_fd() == fd);
}

TEST_CASE("4. wake_on_stop slots: a handful, reusable, no stop yet") {
    std::vector<Pair> pairs;
    std::vector<int> slots;
    for (int i = 0; i < 32; ++i) {
        pairs.push_back(socket_pair(true));
        int slot = ladder::wake_on_stop(pairs.back().a.get());
        if (slot < 0) break;
        slots.push_back(slot);
    }
    CHECK(slots.size() >= 4);
    CHECK(slots.size() < 32);  // bounded
    for (std::size_t i = 0; i < slots.size(); ++i)
        for (std::size_t j = i + 1; j < slots.size(); ++j) CHECK(slots[i] != slots[j]);
    // No stop yet: registering shut nothing down.
    char c;
    CHECK(::read(pairs.front().a.get(), &c, 1) == -1);
    CHECK(errno == EAGAIN);

    ladder::forget_on_stop(slots.back());
    int again = ladder::wake_on_stop(pairs.front().b.get());
    CHECK(again == slots.back());  // the slot is free again
    ladder::forget_on_stop(again);
    for (int slot : slots) ladder::forget_on_stop(slot);
    ladder::forget_on_stop(-1);  // out-of-range slots are ignored
    ladder::forget_on_stop(1000);
    CHECK_FALSE(ladder::stop_requested());
    CHECK_FALSE(readable_now(ladder::stop_fd()));
}

TEST_CASE("5. a stop signal from outside: stop_fd readable, no stop until a loop asks") {
    const int fd = ladder::stop_fd();
    REQUIRE(fd >= 0);
    REQUIRE_FALSE(readable_now(fd));

    // Sent while this thread waits in poll(), from another thread (it
    // inherited the mask): the wait sees it.
    std::thread sender([] {
        std::this_thread::sleep_for(20ms);
        ::kill(::getpid(), SIGTERM);
    });
    bool seen = readable_within(fd, kPatienceMs);
    sender.join();
    CHECK(seen);
    // Seen is not requested: only a loop's request_stop() sets the flag.
    CHECK_FALSE(ladder::stop_requested());
    check_no_stop_time();
    CHECK(readable_now(fd));  // poll() does not take it: it stays pending
    signalfd_siginfo got = take_stop_signal();
    CHECK(got.ssi_signo == SIGTERM);
    CHECK(got.ssi_code == SI_USER);  // kill()
    CHECK(got.ssi_pid == static_cast<std::uint32_t>(::getpid()));
    CHECK_FALSE(readable_now(fd));

    // Sent before the wait (Ctrl-C while the loop was busy): the next wait
    // still sees it. A signal to this thread alone counts as well.
    REQUIRE(::raise(SIGINT) == 0);
    CHECK(readable_within(fd, kPatienceMs));
    CHECK_FALSE(ladder::stop_requested());
    got = take_stop_signal();
    CHECK(got.ssi_signo == SIGINT);
    CHECK(got.ssi_code == SI_TKILL);  // raise() is tgkill()
    CHECK_FALSE(readable_now(fd));
    CHECK_FALSE(ladder::stop_requested());
    check_no_stop_time();
}

TEST_CASE("6. notice_pending_stop: a pending stop signal becomes a stop before busy work") {
    // In a child, so that this process's first stop is still case 7's.
    CHECK_FALSE(readable_now(ladder::stop_fd()));
    ladder::notice_pending_stop();  // nothing pending: nothing to do
    CHECK_FALSE(ladder::stop_requested());
    Child child([](int) -> std::string {
        for (int sig : {SIGTERM, SIGINT}) {
            const std::string name = sig == SIGTERM ? "SIGTERM" : "SIGINT";
            ladder::forget_stop_for_testing();
            ladder::notice_pending_stop();
            if (ladder::stop_requested()) return "a stop with no signal pending";
            // SIGTERM sent to the process, SIGINT to this thread: both count.
            if ((sig == SIGTERM ? ::kill(::getpid(), sig) : ::raise(sig)) != 0)
                return "could not send " + name;
            if (ladder::stop_requested()) return name + " alone set the flag";
            auto before = steady_clock::now();
            ladder::notice_pending_stop();
            auto after = steady_clock::now();
            if (!ladder::stop_requested()) return "no stop for a pending " + name;
            if (stopped_at() < before || stopped_at() > after) return "no stop time";
            const auto give_up = ladder::give_up_at();
            ladder::notice_pending_stop();  // already stopping: nothing moves
            if (ladder::give_up_at() != give_up) return "a second notice moved the time";
            // Still there for the loop's next wait: the signal seen is left
            // pending, and request_stop() sent SIGTERM besides.
            if (!readable_now(ladder::stop_fd())) return "stop_fd not readable";
            int taken = drain_stop_signals();
            if (taken != (sig == SIGTERM ? 1 : 2))
                return std::to_string(taken) + " signals pending after " + name;
        }
        return "";
    });
    CHECK(child.exit_within(kPatienceMs) == "exited 0");
    CHECK(child.report() == "");
}

TEST_CASE("7. request_stop: the flag and the time, sockets wake, stop_fd readable") {
    REQUIRE_FALSE(ladder::stop_requested());  // the first stop of this process
    check_no_stop_time();
    const int fd = ladder::stop_fd();
    REQUIRE_FALSE(readable_now(fd));  // no signal from outside pending

    // A thread asleep in read() on a blocking socket, and a non-blocking one.
    Pair blocking = socket_pair(false);
    Pair nonblocking = socket_pair(true);
    int slot_blocking = ladder::wake_on_stop(blocking.a.get());
    int slot_nonblocking = ladder::wake_on_stop(nonblocking.a.get());
    REQUIRE(slot_blocking >= 0);
    REQUIRE(slot_nonblocking >= 0);
    char c;
    REQUIRE(::read(nonblocking.a.get(), &c, 1) == -1);
    REQUIRE(errno == EAGAIN);

    // Whether the thread is already asleep when the stop comes or reads after
    // it, read() must return 0; only a missing shutdown leaves it hanging.
    std::atomic<ssize_t> sleeper_got{-2};
    std::thread sleeper([&] {
        char byte;
        sleeper_got = ::read(blocking.a.get(), &byte, 1);
    });
    // And a thread asleep in accept4() on a blocking listener (steps 01, 02, 07).
    Fd listener = ladder::listen_tcp("127.0.0.1", 0, false);
    int slot_listener = ladder::wake_on_stop(listener.get());
    REQUIRE(slot_listener >= 0);
    std::atomic<int> accepted{-2}, accept_errno{0};
    std::thread acceptor([&] {
        int got = ::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC);
        accept_errno = errno;
        accepted = got;
    });

    auto before = steady_clock::now();
    errno = EDOM;
    ladder::request_stop();
    CHECK(errno == EDOM);  // errno left alone
    auto after = steady_clock::now();
    CHECK(ladder::stop_requested());
    check_stop_time(before, after);

    // Should the shutdown be missing, fail rather than hang: give the sleeper a byte.
    bool woke = readable_within(blocking.a.get(), kPatienceMs);
    if (!woke) (void)!::write(blocking.b.get(), "!", 1);
    sleeper.join();
    CHECK(woke);
    CHECK(sleeper_got == 0);
    // A listener shut down for reading stops listening: accept4 fails with
    // EINVAL, which a step takes for the stop.
    bool still_listening = listening(listener);
    CHECK_FALSE(still_listening);
    Fd rescue;  // should the shutdown be missing, a client wakes the acceptor
    if (still_listening) rescue = connect_loopback(ladder::local_port(listener));
    acceptor.join();
    Fd accepted_fd(accepted);
    CHECK(accepted == -1);
    CHECK(accept_errno == EINVAL);
    CHECK_FALSE(ladder::client_gone_before_accept(accept_errno));
    CHECK(::read(nonblocking.a.get(), &c, 1) == 0);
    // Shut down for reading only: the other direction still works.
    CHECK(::write(blocking.a.get(), "k", 1) == 1);
    CHECK(::read(blocking.b.get(), &c, 1) == 1);

    // stop_fd is readable for every loop, though nobody else sent a signal:
    // nothing was pending before, so this SIGTERM is request_stop's own.
    CHECK(readable_within(fd, kPatienceMs));
    signalfd_siginfo got = take_stop_signal();
    CHECK(got.ssi_signo == SIGTERM);
    CHECK(got.ssi_code == SI_USER);
    CHECK(got.ssi_pid == static_cast<std::uint32_t>(::getpid()));
    CHECK_FALSE(readable_now(fd));

    // Each call sends it again, from any thread; the time stays the first.
    const auto give_up = ladder::give_up_at();
    std::thread([] { ladder::request_stop(); }).join();
    CHECK(readable_within(fd, kPatienceMs));
    ladder::request_stop();
    CHECK(ladder::give_up_at() == give_up);
    // A standard signal is pending once however often it was sent.
    CHECK(drain_stop_signals() == 1);
    CHECK_FALSE(readable_now(fd));

    ladder::forget_on_stop(slot_blocking);
    ladder::forget_on_stop(slot_nonblocking);
    ladder::forget_on_stop(slot_listener);
}

TEST_CASE("8. after the stop: it stays, late registrations are shut down at once") {
    REQUIRE(ladder::stop_requested());
    const auto give_up = ladder::give_up_at();
    REQUIRE(give_up != steady_clock::time_point::max());

    // Registered, but not a socket: shutdown() fails inside request_stop,
    // which must still leave the caller's errno alone.
    int pipe_fds[2];
    REQUIRE(::pipe2(pipe_fds, O_CLOEXEC) == 0);
    Fd pipe_read(pipe_fds[0]), pipe_write(pipe_fds[1]);
    int odd_slot = ladder::wake_on_stop(pipe_read.get());
    REQUIRE(odd_slot >= 0);
    errno = EDOM;
    ladder::request_stop();
    CHECK(errno == EDOM);
    CHECK(ladder::stop_requested());
    CHECK(ladder::give_up_at() == give_up);
    ladder::forget_on_stop(odd_slot);

    Pair p = socket_pair(true);
    int slot = ladder::wake_on_stop(p.a.get());
    REQUIRE(slot >= 0);
    char c;
    CHECK(::read(p.a.get(), &c, 1) == 0);  // the stop came first: shut down on registration
    ladder::forget_on_stop(slot);

    Fd listener = ladder::listen_tcp("127.0.0.1", 0, false);  // blocking: accept could sleep
    int listener_slot = ladder::wake_on_stop(listener.get());
    REQUIRE(listener_slot >= 0);
    REQUIRE_FALSE(listening(listener));  // else the blocking accept below would sleep forever
    Fd conn(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    int err = errno;
    CHECK_FALSE(conn.valid());
    CHECK(err == EINVAL);
    CHECK_FALSE(ladder::client_gone_before_accept(err));  // not a client's error: the stop
    ladder::forget_on_stop(listener_slot);

    CHECK(drain_stop_signals() == 1);  // the request_stop() above
}

TEST_CASE("9. watch_stop_in_a_thread: a SIGTERM becomes a stop, a sleeping read wakes") {
    // In a child: the watcher thread is detached and lives until its process
    // ends. `early`: the SIGTERM comes before the child has a watcher at all
    // (blocked since fork, it waits pending); else while its threads sleep.
    for (bool early : {true, false}) {
        CAPTURE(early);
        Child child([](int ready_fd) -> std::string {
            ladder::forget_stop_for_testing();  // the parent's stop is not this one's
            if (!blocked_in_this_thread(SIGTERM)) return "SIGTERM not blocked after fork";
            Pair p = try_socket_pair(false);
            if (!p.a) return "socketpair failed";
            int slot = ladder::wake_on_stop(p.a.get());
            if (slot < 0) return "no wake_on_stop slot";
            std::atomic<ssize_t> got{-2};
            std::thread reader([&] {
                char byte;
                got = ::read(p.a.get(), &byte, 1);
            });
            ladder::watch_stop_in_a_thread();
            if (!say_ready(ready_fd)) return "could not say ready";
            std::string what;
            if (!true_within(kPatienceMs, ladder::stop_requested))
                what = "no stop_requested() within 10 s of the SIGTERM";
            else if (!true_within(kPatienceMs, [&] { return got != -2; }))
                what = "the registered read() did not wake";
            if (got == -2) (void)!::write(p.b.get(), "!", 1);  // rescue the reader
            reader.join();
            if (what.empty() && got != 0) what = "read() returned " + std::to_string(got);
            // The watcher took the SIGTERM; its request_stop() sent another.
            if (what.empty() && !readable_within(ladder::stop_fd(), kPatienceMs))
                what = "stop_fd not readable after the watcher's stop";
            ladder::forget_on_stop(slot);
            return what;
        });
        if (early) REQUIRE(::kill(child.pid(), SIGTERM) == 0);
        CHECK(child.ready_within(kPatienceMs));
        if (!early) {
            std::this_thread::sleep_for(20ms);  // let the reader fall asleep
            REQUIRE(::kill(child.pid(), SIGTERM) == 0);
        }
        CHECK(child.exit_within(kPatienceMs) == "exited 0");
        CHECK(child.report() == "");
    }
}

TEST_CASE("10. handle_stop_signals_in_child: the parent's signal wakes the child's read") {
    // A child of fork() without threads: the handler does request_stop()'s
    // work (flag, time, shutdown) and the read returns EINTR, then 0.
    struct Row {
        int sig;
        bool early;  // sent at once after fork: pending until the handler is in
    };
    for (Row row : {Row{SIGTERM, true}, Row{SIGTERM, false}, Row{SIGINT, false}}) {
        CAPTURE(row.sig);
        CAPTURE(row.early);
        Child child([](int ready_fd) -> std::string {
            ladder::forget_stop_for_testing();  // before the handler: it may run at once
            ladder::handle_stop_signals_in_child();
            for (int sig : {SIGINT, SIGTERM}) {
                struct sigaction sa {};
                ::sigaction(sig, nullptr, &sa);
                if (blocked_in_this_thread(sig))
                    return "still blocked: " + std::to_string(sig);
                if (sa.sa_handler == SIG_DFL || sa.sa_handler == SIG_IGN)
                    return "no handler for " + std::to_string(sig);
                if (sa.sa_flags & SA_RESTART) return "SA_RESTART: a read would not return";
            }
            Pair p = try_socket_pair(false);
            if (!p.a) return "socketpair failed";
            int slot = ladder::wake_on_stop(p.a.get());
            if (slot < 0) return "no wake_on_stop slot";
            if (!say_ready(ready_fd)) return "could not say ready";
            char byte;
            ssize_t n;
            while ((n = ::read(p.a.get(), &byte, 1)) < 0 && errno == EINTR) {
            }
            ladder::forget_on_stop(slot);
            if (n != 0) return "read() returned " + std::to_string(n);
            if (!ladder::stop_requested()) return "read() woke, but no stop_requested()";
            if (ladder::give_up_at() == steady_clock::time_point::max()) return "no stop time";
            return "";
        });
        if (row.early) REQUIRE(::kill(child.pid(), row.sig) == 0);
        CHECK(child.ready_within(kPatienceMs));
        if (!row.early) {
            std::this_thread::sleep_for(20ms);  // let the child fall asleep in read()
            REQUIRE(::kill(child.pid(), row.sig) == 0);
        }
        CHECK(child.exit_within(kPatienceMs) == "exited 0");
        CHECK(child.report() == "");
    }
}

TEST_CASE("11. the timeline: the first stop sets it; forget_stop_for_testing clears it") {
    REQUIRE(ladder::stop_requested());
    const auto first = stopped_at();
    const auto give_up = ladder::give_up_at();
    REQUIRE(give_up != steady_clock::time_point::max());
    CHECK(first + ladder::kGiveUpTime == give_up);

    // Later stops, by a loop that saw a SIGTERM or by request_stop() alone,
    // do not move the deadline.
    REQUIRE(::kill(::getpid(), SIGTERM) == 0);
    REQUIRE(readable_within(ladder::stop_fd(), kPatienceMs));
    ladder::request_stop();
    ladder::request_stop();
    CHECK(ladder::give_up_at() == give_up);
    CHECK(stopped_at() == first);

    ladder::forget_stop_for_testing();
    CHECK_FALSE(ladder::stop_requested());
    check_no_stop_time();
    CHECK(readable_now(ladder::stop_fd()));  // the pending signal is left as it is
    CHECK(drain_stop_signals() == 1);

    auto before = steady_clock::now();
    ladder::request_stop();
    auto after = steady_clock::now();
    CHECK(ladder::stop_requested());
    check_stop_time(before, after);
    CHECK(stopped_at() > first);

    // As the process found it, but for stop_fd and the mask.
    ladder::forget_stop_for_testing();
    CHECK_FALSE(ladder::stop_requested());
    CHECK(drain_stop_signals() == 1);
}

// test_signals.cpp — stop handlers, stop_fd, wake_on_stop.
//
// The stop state is process-global and sticky, so the cases run in file order
// (doctest's default) and each relies on the ones before it: first the state
// before any stop, then the stop itself, then what holds after it.
//
// doctest installs its own SIGINT/SIGTERM handlers around every test case and
// restores the previous ones afterwards, so each case that raises a signal
// calls install_stop_handlers() itself.
#include "signals.h"

#include "fd.h"
#include "net.h"

#include <doctest/doctest.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

using ladder::Fd;

namespace {

// Generous: only a broken implementation waits this long.
constexpr int kPatienceMs = 10000;

bool readable_within(int fd, int ms) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

bool readable_now(int fd) { return readable_within(fd, 0); }

struct Pair {
    Fd a, b;
};
Pair socket_pair(bool nonblocking) {
    int sv[2];
    int type = SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0);
    REQUIRE(::socketpair(AF_UNIX, type, 0, sv) == 0);
    return {Fd(sv[0]), Fd(sv[1])};
}

// The handler's address as a number: doctest cannot print function pointers.
std::uintptr_t handler_of(int sig) {
    struct sigaction sa {};
    REQUIRE(::sigaction(sig, nullptr, &sa) == 0);
    return reinterpret_cast<std::uintptr_t>(sa.sa_handler);
}
const std::uintptr_t kDefaultAction = reinterpret_cast<std::uintptr_t>(SIG_DFL);
const std::uintptr_t kIgnored = reinterpret_cast<std::uintptr_t>(SIG_IGN);

}  // namespace

TEST_CASE("1. before install: no stop, no stop_fd") {
    CHECK_FALSE(ladder::stop_requested());
    CHECK(ladder::stop_fd() == -1);
}

TEST_CASE("2. install_stop_handlers") {
    ladder::install_stop_handlers();
    int fd = ladder::stop_fd();
    REQUIRE(fd >= 0);
    CHECK((::fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
    CHECK((::fcntl(fd, F_GETFL) & O_NONBLOCK) != 0);
    CHECK_FALSE(readable_now(fd));
    CHECK_FALSE(ladder::stop_requested());
    CHECK(handler_of(SIGPIPE) == kIgnored);
    for (int sig : {SIGINT, SIGTERM}) {
        CAPTURE(sig);
        CHECK(handler_of(sig) != kDefaultAction);
        CHECK(handler_of(sig) != kIgnored);
    }
    CHECK(handler_of(SIGINT) == handler_of(SIGTERM));

    struct sigaction term {};
    REQUIRE(::sigaction(SIGTERM, nullptr, &term) == 0);
    CHECK((term.sa_flags & SA_RESTART) == 0);  // blocked calls must return EINTR

    ladder::install_stop_handlers();  // twice: the same eventfd
    CHECK(ladder::stop_fd() == fd);
}

TEST_CASE("3. wake_on_stop slots: a handful, reusable, no stop yet") {
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
    CHECK(again == slots.back());
    ladder::forget_on_stop(again);
    for (int slot : slots) ladder::forget_on_stop(slot);
    ladder::forget_on_stop(-1);  // out-of-range slots are ignored
    ladder::forget_on_stop(1000);
    CHECK_FALSE(ladder::stop_requested());
}

TEST_CASE("4. block_stop_signals_in_this_thread blocks only that thread") {
    sigset_t in_thread;
    sigemptyset(&in_thread);
    std::thread t([&] {
        ladder::block_stop_signals_in_this_thread();
        pthread_sigmask(SIG_BLOCK, nullptr, &in_thread);
    });
    t.join();
    CHECK(sigismember(&in_thread, SIGINT) == 1);
    CHECK(sigismember(&in_thread, SIGTERM) == 1);
    sigset_t here;
    REQUIRE(pthread_sigmask(SIG_BLOCK, nullptr, &here) == 0);
    CHECK(sigismember(&here, SIGTERM) == 0);
}

TEST_CASE("5. SIGTERM: stop requested, stop_fd readable, registered sockets wake") {
    REQUIRE_FALSE(ladder::stop_requested());  // the first stop of this process
    ladder::install_stop_handlers();

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
    ssize_t sleeper_got = -2;
    std::thread sleeper([&] {
        char byte;
        sleeper_got = ::read(blocking.a.get(), &byte, 1);
    });

    errno = EDOM;
    REQUIRE(::raise(SIGTERM) == 0);
    CHECK(errno == EDOM);  // the handler preserved errno
    // Should the shutdown be missing, fail rather than hang: give the sleeper a byte.
    bool woke = readable_within(blocking.a.get(), kPatienceMs);
    if (!woke) (void)!::write(blocking.b.get(), "!", 1);
    sleeper.join();
    CHECK(woke);

    CHECK(ladder::stop_requested());
    CHECK(readable_now(ladder::stop_fd()));
    CHECK(sleeper_got == 0);
    CHECK(::read(nonblocking.a.get(), &c, 1) == 0);
    // Shut down for reading only: the other direction still works.
    CHECK(::write(blocking.a.get(), "k", 1) == 1);
    CHECK(::read(blocking.b.get(), &c, 1) == 1);

    ladder::forget_on_stop(slot_blocking);
    ladder::forget_on_stop(slot_nonblocking);
}

TEST_CASE("6. after the stop: it stays, and late registrations wake at once") {
    CHECK(ladder::stop_requested());
    CHECK(readable_now(ladder::stop_fd()));  // never drained

    ladder::install_stop_handlers();
    REQUIRE(::raise(SIGINT) == 0);  // handled, not fatal
    CHECK(ladder::stop_requested());

    // Registered, but not a socket: shutdown() fails inside request_stop,
    // which must still leave the caller's errno alone.
    int pipe_fds[2];
    REQUIRE(::pipe2(pipe_fds, O_CLOEXEC) == 0);
    Fd pipe_read(pipe_fds[0]), pipe_write(pipe_fds[1]);
    int odd_slot = ladder::wake_on_stop(pipe_read.get());
    REQUIRE(odd_slot >= 0);
    errno = EDOM;
    ladder::request_stop();  // idempotent, keeps errno
    CHECK(errno == EDOM);
    CHECK(ladder::stop_requested());
    ladder::forget_on_stop(odd_slot);

    Pair p = socket_pair(true);
    int slot = ladder::wake_on_stop(p.a.get());
    REQUIRE(slot >= 0);
    char c;
    CHECK(::read(p.a.get(), &c, 1) == 0);  // the stop came first: shut down on registration
    ladder::forget_on_stop(slot);
}

TEST_CASE("7. a listener shut down by the stop: try_accept returns empty") {
    REQUIRE(ladder::stop_requested());
    ladder::ListenOptions o;
    o.port = 0;
    Fd listener = ladder::listen_tcp(o);  // blocking: accept would otherwise sleep
    int slot = ladder::wake_on_stop(listener.get());
    REQUIRE(slot >= 0);
    int listening = 1;
    socklen_t len = sizeof listening;
    REQUIRE(::getsockopt(listener.get(), SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0);
    REQUIRE(listening == 0);  // else the blocking accept below would sleep forever
    bool refused = true;
    auto conn = ladder::try_accept(listener, false, &refused);  // accept4 fails EINVAL
    CHECK_FALSE(conn.has_value());
    CHECK_FALSE(refused);
    ladder::forget_on_stop(slot);
}

TEST_CASE("8. request_stop counts every stop on stop_fd") {
    // Last: reading the eventfd drains it.
    std::uint64_t before = 0;
    REQUIRE(::read(ladder::stop_fd(), &before, sizeof before) == sizeof before);
    CHECK(before >= 3);  // SIGTERM, SIGINT, request_stop() above
    CHECK_FALSE(readable_now(ladder::stop_fd()));
    ladder::request_stop();
    ladder::request_stop();
    std::uint64_t after = 0;
    REQUIRE(::read(ladder::stop_fd(), &after, sizeof after) == sizeof after);
    CHECK(after == 2);
}

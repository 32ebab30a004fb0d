#include "signals.h"

#include "error.h"

#include <atomic>
#include <csignal>
#include <pthread.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <thread>
#include <time.h>
#include <unistd.h>

namespace ladder {

namespace {

constexpr int kWakeSlots = 8;

std::atomic<bool> stop_flag{false};
// CLOCK_MONOTONIC nanoseconds of the first stop request; 0 before it.
std::atomic<long long> stop_ns{0};
std::atomic<int> signal_fd{-1};
// True while SIGINT/SIGTERM are blocked and read through signal_fd: only
// then may request_stop() send this process a SIGTERM.
std::atomic<bool> blocked{false};
std::atomic<int> wake_fds[kWakeSlots] = {-1, -1, -1, -1, -1, -1, -1, -1};

static_assert(std::atomic<bool>::is_always_lock_free && std::atomic<int>::is_always_lock_free &&
                  std::atomic<long long>::is_always_lock_free,
              "a signal handler may only touch lock-free atomics");

// clock_gettime is async-signal-safe (POSIX), and std::chrono's steady_clock
// reads the same clock.
long long monotonic_ns() noexcept {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1'000'000'000LL + ts.tv_nsec;
}

bool past(std::chrono::milliseconds after_stop) noexcept {
    long long at = stop_ns.load();
    return at != 0 && monotonic_ns() - at >= after_stop.count() * 1'000'000LL;
}

// Everything request_stop() does but the signal; async-signal-safe.
void note_stop() noexcept {
    int saved = errno;
    long long none = 0;
    stop_ns.compare_exchange_strong(none, monotonic_ns());  // the first request sets the time
    stop_flag.store(true);
    for (auto& slot : wake_fds)
        if (int fd = slot.load(); fd >= 0) ::shutdown(fd, SHUT_RD);
    errno = saved;
}

void on_stop_signal(int) { note_stop(); }

sigset_t stop_signals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    return set;
}

}  // namespace

void request_stop() noexcept {
    note_stop();
    if (blocked.load()) ::kill(::getpid(), SIGTERM);  // pending: stop_fd() turns readable
}

bool stop_requested() noexcept { return stop_flag.load(std::memory_order_relaxed); }

bool drain_over() noexcept { return past(kDrainTime); }
bool drain_given_up() noexcept { return past(kGiveUpTime); }

std::chrono::steady_clock::time_point give_up_at() noexcept {
    long long at = stop_ns.load();
    if (at == 0) return std::chrono::steady_clock::time_point::max();
    return std::chrono::steady_clock::time_point(std::chrono::nanoseconds(at)) + kGiveUpTime;
}

void forget_stop_for_testing() noexcept {
    stop_flag.store(false);
    stop_ns.store(0);
}

int stop_fd() noexcept { return signal_fd.load(); }

void install_stop_handlers() {
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    if (::sigaction(SIGPIPE, &ignore, nullptr) != 0) throw_sys("sigaction(SIGPIPE)");
    sigset_t set = stop_signals();
    if (int err = ::pthread_sigmask(SIG_BLOCK, &set, nullptr); err != 0)
        throw_sys("pthread_sigmask(SIG_BLOCK)", err);
    if (signal_fd.load() < 0) {
        int fd = ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
        if (fd < 0) throw_sys("signalfd(SIGINT, SIGTERM)");
        signal_fd.store(fd);
    }
    blocked.store(true);
}

void notice_pending_stop() noexcept {
    sigset_t pending;
    if (!blocked.load() || stop_requested() || ::sigpending(&pending) != 0) return;
    if (sigismember(&pending, SIGTERM) == 1 || sigismember(&pending, SIGINT) == 1)
        request_stop();
}

void watch_stop_in_a_thread() {
    sigset_t set = stop_signals();
    // A signalfd of its own, blocking: read() sleeps until a stop signal is
    // pending and takes it; request_stop() then sends one again, so that
    // stop_fd() stays readable for everyone else.
    int fd = ::signalfd(-1, &set, SFD_CLOEXEC);
    if (fd < 0) throw_sys("signalfd(SIGINT, SIGTERM)");
    std::thread([fd] {
        signalfd_siginfo info{};
        while (::read(fd, &info, sizeof info) < 0 && errno == EINTR) {
        }
        request_stop();
    }).detach();
}

void handle_stop_signals_in_child() {
    blocked.store(false);
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: a blocked call returns EINTR
    if (::sigaction(SIGINT, &sa, nullptr) != 0) throw_sys("sigaction(SIGINT)");
    if (::sigaction(SIGTERM, &sa, nullptr) != 0) throw_sys("sigaction(SIGTERM)");
    sigset_t set = stop_signals();
    if (int err = ::pthread_sigmask(SIG_UNBLOCK, &set, nullptr); err != 0)
        throw_sys("pthread_sigmask(SIG_UNBLOCK)", err);
}

int wake_on_stop(int fd) noexcept {
    for (int i = 0; i < kWakeSlots; ++i) {
        int expected = -1;
        if (wake_fds[i].compare_exchange_strong(expected, fd)) {
            if (stop_requested()) ::shutdown(fd, SHUT_RD);  // the stop came first
            return i;
        }
    }
    return -1;
}

void forget_on_stop(int slot) noexcept {
    if (slot >= 0 && slot < kWakeSlots) wake_fds[slot].store(-1);
}

void block_stop_signals_in_this_thread() {
    sigset_t set = stop_signals();
    if (int err = ::pthread_sigmask(SIG_BLOCK, &set, nullptr); err != 0)
        throw_sys("pthread_sigmask(SIG_BLOCK)", err);
}

}  // namespace ladder
